"""A node talks to an https coordinator over TLS 1.3 only, verified against ``COORDINATOR_CA``, and checks at start
that it is the coordinator it expects; every failure is one line naming the setting and the fix.

Real handshakes throughout: the coordinator is ``tandem-coordinator serve`` over TLS in a subprocess, and the
certificates it refuses to serve (expired, not yet valid, TLS 1.2 only) come from a bare ``ssl`` server.
"""

from __future__ import annotations

import datetime
import ssl

import pytest
from typer.testing import CliRunner

from bank_node.cli import main as bank_cli
from bank_node.settings import BankSettings
from node.coordinator_client import CoordinatorClient, CoordinatorUnavailable, coordinator_tls_context
from node.keys import init_keys
from node.ledger import EgressLedger
from node.runtime import NodeRuntime
from protocols.wire.errors import ConfigError
from tests.support.coordinator import World
from tests.support.tls_coordinator import TlsCoordinator, bare_tls_server, make_ca

PREFIX = "TANDEM_BANK_"
runner = CliRunner()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("node-tls")
    coordinator = TlsCoordinator(tmp / "state", make_ca(tmp / "ca", ["localhost"]))
    coordinator.start()
    with coordinator.client() as client:
        world = World(client).populate()  # bank and telco registered with TLS fingerprint "c" * 64
        world.add_user("acme_admin", "admin", "acme")  # a party with a user, never registered
        coordinator.tokens = world.tokens
        coordinator.audit_key = client.get("/api/v1/audit/public-key").json()["public_key"]
    try:
        yield coordinator
    finally:
        coordinator.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("other-ca"), ["localhost"])


def _client(url: str, token: str = "x" * 32, verify: bool | str = True) -> CoordinatorClient:
    return CoordinatorClient(url, token, None, verify=verify, settings_prefix=PREFIX)


def _unavailable(url: str, verify: bool | str) -> str:
    with pytest.raises(CoordinatorUnavailable) as caught, _client(url, verify=verify) as client:
        client.healthz()
    return str(caught.value)


# ------------------------------------------------------------------ the handshake


def test_the_client_verifies_against_coordinator_ca_with_tls_1_3_minimum(served):
    context = coordinator_tls_context(served.files.ca)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3 and context.check_hostname
    with _client(served.url, verify=str(served.files.ca)) as client:
        assert client.healthz()["status"] == "ok"


def test_a_certificate_from_another_ca_names_coordinator_ca(served, other_ca):
    message = _unavailable(served.url, str(other_ca.ca))
    assert f"not signed by the CA in {PREFIX}COORDINATOR_CA ({other_ca.ca})" in message
    assert "not signed by the system store" in _unavailable(served.url, True)


def test_a_certificate_not_naming_the_host_says_which_name_to_issue(served):
    ip_url = served.url.replace("localhost", "127.0.0.1")
    message = _unavailable(ip_url, str(served.files.ca))
    assert message.startswith("coordinator certificate does not name 127.0.0.1; issue it with --name 127.0.0.1")


@pytest.mark.parametrize(("shift", "expected"), [(-40, "has expired"), (+3, "is not valid yet")])
def test_an_expired_or_future_certificate_is_named_not_a_traceback(tmp_path, shift, expected):
    issued = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=shift)
    files = make_ca(tmp_path / "ca", ["localhost"], days=30, now=issued)
    with bare_tls_server(files.cert, files.key) as port:
        assert expected in _unavailable(f"https://localhost:{port}", str(files.ca))


def test_a_server_without_tls_1_3_is_refused(tmp_path):
    files = make_ca(tmp_path / "ca", ["localhost"])
    with bare_tls_server(files.cert, files.key, maximum_version=ssl.TLSVersion.TLSv1_2) as port:
        assert "does not offer TLS 1.3" in _unavailable(f"https://localhost:{port}", str(files.ca))


def test_https_to_a_plain_http_server_says_so(tmp_path):
    files = make_ca(tmp_path / "ca", ["localhost"])
    with bare_tls_server(None, None) as port:
        assert "does not speak TLS" in _unavailable(f"https://localhost:{port}", str(files.ca))


def test_an_unreadable_ca_file_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=f"{PREFIX}COORDINATOR_CA: cannot load"):
        _client("https://localhost:1", verify=str(tmp_path / "missing.pem"))


# ------------------------------------------------------------------ start-up checks (preflight)


def _preflight(served, party: str = "bank", token: str | None = None, **kwargs):
    with _client(served.url, token or served.tokens[f"{party}_admin"], str(served.files.ca)) as client:
        return client.preflight(party, max_clock_skew=kwargs.pop("max_clock_skew", 300.0), **kwargs)


def test_the_expected_coordinator_passes_every_check(served):
    check = _preflight(served, expected_key=served.audit_key, own_fingerprint="c" * 64)
    assert check.audit_key == served.audit_key and abs(check.clock_offset_s) < 60 and check.policy_version


def test_a_clock_skewed_by_hours_is_refused_naming_the_setting(served):
    skewed = lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=3)  # noqa: E731
    with pytest.raises(ConfigError, match=f"{PREFIX}MAX_CLOCK_SKEW: .* by 1080[0-9] s"):
        _preflight(served, clock=skewed)


def test_another_coordinator_key_is_refused_naming_the_setting(served):
    with pytest.raises(ConfigError, match=f"{PREFIX}COORDINATOR_KEY: .* another coordinator"):
        _preflight(served, expected_key="ab" * 32)


def test_a_token_this_coordinator_never_issued_is_refused(served):
    with pytest.raises(ConfigError, match=f"{PREFIX}API_TOKEN: .* does not accept this token"):
        _preflight(served, token="t" * 40)


def test_a_token_of_another_party_is_refused(served):
    with pytest.raises(ConfigError, match=f"{PREFIX}API_TOKEN: .* party telco .* not to party bank"):
        _preflight(served, token=served.tokens["telco_admin"])


def test_serve_refuses_a_coordinator_that_does_not_know_the_party(served):
    with pytest.raises(ConfigError, match="party acme is not registered .* run init first"):
        _preflight(served, party="acme", own_fingerprint="d" * 64)


def test_serve_refuses_a_coordinator_listing_another_certificate_for_the_party(served):
    with pytest.raises(ConfigError, match=f"lists party bank with another TLS certificate .* {PREFIX}STATE_DIR"):
        _preflight(served, own_fingerprint="d" * 64)


def test_a_server_that_is_not_a_coordinator_is_refused(tmp_path):
    files = make_ca(tmp_path / "ca", ["localhost"])
    with bare_tls_server(files.cert, files.key) as port, \
            _client(f"https://localhost:{port}", verify=str(files.ca)) as client:
        with pytest.raises(ConfigError, match=f"{PREFIX}COORDINATOR_URL: .* is not a Tandem coordinator"):
            client.preflight("bank", max_clock_skew=300)


# ------------------------------------------------------------------ the node's commands and runtime


@pytest.fixture
def node_env(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {f"{PREFIX}API_TOKEN": served.tokens["bank_admin"], f"{PREFIX}COORDINATOR_URL": served.url,
           f"{PREFIX}COORDINATOR_CA": str(served.files.ca), f"{PREFIX}STATE_DIR": str(tmp_path / "state")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def test_init_against_the_wrong_ca_is_one_line_and_creates_no_state(node_env, other_ca, monkeypatch):
    monkeypatch.setenv(f"{PREFIX}COORDINATOR_CA", str(other_ca.ca))
    result = runner.invoke(bank_cli, ["init"])
    assert result.exit_code == 2
    assert f"{PREFIX}COORDINATOR_CA" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (node_env / "state").exists()


def test_init_against_a_skewed_or_wrong_coordinator_creates_no_state(node_env, monkeypatch):
    monkeypatch.setenv(f"{PREFIX}COORDINATOR_KEY", "ab" * 32)
    result = runner.invoke(bank_cli, ["init"])
    assert result.exit_code == 2 and f"{PREFIX}COORDINATOR_KEY" in result.output
    assert not (node_env / "state").exists()


def test_the_runtime_and_the_job_commands_use_coordinator_ca(node_env, served, other_ca, monkeypatch):
    rt = NodeRuntime.open(BankSettings(), create_keys=True)
    try:
        assert rt.coordinator.me().party == "bank"
    finally:
        rt.close()
    assert runner.invoke(bank_cli, ["job", "list"]).exit_code == 0
    monkeypatch.setenv(f"{PREFIX}COORDINATOR_CA", str(other_ca.ca))
    result = runner.invoke(bank_cli, ["job", "list"])
    assert result.exit_code == 2 and f"not signed by the CA in {PREFIX}COORDINATOR_CA" in result.output


@pytest.mark.parametrize(("name", "value", "says"), [
    ("API_TOKEN", "changethis", "placeholder"),
    ("COORDINATOR_URL", "http://coordinator.example:8600", "loopback only; use https://"),
])
def test_a_placeholder_token_or_plain_http_off_loopback_is_refused_naming_it(node_env, monkeypatch, name, value, says):
    monkeypatch.setenv(f"{PREFIX}{name}", value)
    result = runner.invoke(bank_cli, ["init"])
    assert result.exit_code == 2 and f"{PREFIX}{name}" in result.output and says in result.output
    assert not (node_env / "state").exists()


def test_the_ledger_records_nothing_for_the_start_up_checks(served, tmp_path):
    ledger = EgressLedger(tmp_path / "node.db")
    try:
        with CoordinatorClient(served.url, served.tokens["bank_admin"], ledger, verify=str(served.files.ca)) as c:
            c.preflight("bank", max_clock_skew=300)
        assert ledger.verify().count == 0
    finally:
        ledger.close()


def test_serve_with_another_node_s_state_directory_is_refused_before_serving(served, node_env, monkeypatch):
    with served.client() as client:
        token = World(client).add_user("zeta_admin", "admin", "zeta")
    monkeypatch.setenv(f"{PREFIX}PARTY", "zeta")
    monkeypatch.setenv(f"{PREFIX}API_TOKEN", token)
    assert runner.invoke(bank_cli, ["init"]).exit_code == 0  # registers zeta with this state's certificate
    init_keys(node_env / "other", "zeta")  # another node's keys under the same party name
    monkeypatch.setenv(f"{PREFIX}STATE_DIR", str(node_env / "other"))

    result = runner.invoke(bank_cli, ["serve"])

    assert result.exit_code == 2, result.output
    assert "lists party zeta with another TLS certificate" in result.output and "serving on" not in result.output
