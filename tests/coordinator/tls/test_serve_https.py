"""``tandem-coordinator serve`` over HTTPS: TLS 1.3 only, a pinned client works, the session cookie is Secure.

And the start-up refusals: plain HTTP off loopback, unusable certificate files, each naming the setting,
exit 2, no traceback and no state directory left behind.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys

import httpx
import pytest

from coordinator import tls
from coordinator.api.web_sessions import COOKIE
from coordinator.settings import Settings
from protocols.wire.errors import ConfigError
from tests.support.coordinator import BOOT, World
from tests.support.live_coordinator import ROOT
from tests.support.tls_coordinator import TlsCoordinator, make_ca


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("https")
    coordinator = TlsCoordinator(tmp / "state", make_ca(tmp / "ca", ["localhost"]))
    coordinator.start()
    try:
        yield coordinator
    finally:
        coordinator.stop()


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            return str(conn.version())


def test_a_client_pinned_to_the_ca_gets_tls_1_3(served):
    with served.client() as client:
        assert client.get("/api/v1/healthz").json()["status"] == "ok"
    assert _handshake(served.port, ssl.create_default_context(cafile=served.files.ca)) == "TLSv1.3"


def test_a_tls_1_2_only_client_is_refused(served):
    context = ssl.create_default_context(cafile=served.files.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _handshake(served.port, context)


def test_a_client_without_the_ca_is_refused(served):
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=True) as client:  # system store only
        client.get(f"{served.url}/api/v1/healthz")


def test_the_session_cookie_is_secure_over_https(served):
    with served.client() as client:
        world = World(client)
        token = world.add_user("auditor", "auditor", None)
        response = client.post("/login", data={"token": token, "next": "/audit"}, headers={"Origin": served.url})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


def _serve(tmp_path, host: str, **env: str) -> subprocess.CompletedProcess[str]:
    state = tmp_path / "state"
    full = {**os.environ, "TANDEM_COORD_STATE_DIR": str(state), "TANDEM_COORD_BOOTSTRAP_TOKEN": BOOT,
            "TANDEM_COORD_TRAINING_ENABLED": "0", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "serve", "--host", host, "--port", "1"],
                          env=full, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_serve_refuses_plain_http_off_loopback_and_leaves_no_state(tmp_path):
    done = _serve(tmp_path, "0.0.0.0")  # noqa: S104
    assert done.returncode == 2, done.stderr
    assert "TANDEM_COORD_TLS_CERT" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()


def test_serve_refuses_an_expired_certificate_and_leaves_no_state(tmp_path):
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)
    files = make_ca(tmp_path / "ca", ["localhost"], days=30, now=past)
    done = _serve(tmp_path, "0.0.0.0", TANDEM_COORD_TLS_CERT=str(files.cert),  # noqa: S104
                  TANDEM_COORD_TLS_KEY=str(files.key))
    assert done.returncode == 2, done.stderr
    assert "TANDEM_COORD_TLS_CERT" in done.stderr and "expired" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()


@pytest.fixture
def pair(tmp_path):
    return make_ca(tmp_path / "ca", ["localhost"])


def test_missing_or_unreadable_files_name_the_setting(pair, tmp_path):
    with pytest.raises(ConfigError, match="TANDEM_COORD_TLS_CERT: cannot read"):
        tls.check_server_files(tmp_path / "nope.crt", pair.key)
    with pytest.raises(ConfigError, match="TANDEM_COORD_TLS_KEY: cannot read"):
        tls.check_server_files(pair.cert, tmp_path)  # a directory: unreadable as a file


def test_files_that_are_not_pem_name_the_setting(pair, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match="TANDEM_COORD_TLS_CERT: .* is not a PEM certificate"):
        tls.check_server_files(junk, pair.key)
    with pytest.raises(ConfigError, match="TANDEM_COORD_TLS_KEY: .* is not an unencrypted PEM private key"):
        tls.check_server_files(pair.cert, junk)


def test_a_key_of_another_certificate_is_refused(pair, tmp_path):
    other = make_ca(tmp_path / "ca", ["localhost"], out="other")
    with pytest.raises(ConfigError, match="TANDEM_COORD_TLS_KEY: .* does not match the certificate"):
        tls.check_server_files(pair.cert, other.key)


def test_a_certificate_not_valid_yet_is_refused(tmp_path):
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=3)
    files = make_ca(tmp_path / "ca", ["localhost"], now=future)
    with pytest.raises(ConfigError, match="TANDEM_COORD_TLS_CERT: .* is not valid before .* clock"):
        tls.check_server_files(files.cert, files.key)


def test_cert_and_key_come_together(tmp_path):
    with pytest.raises(ValueError, match="TANDEM_COORD_TLS_CERT is set but TANDEM_COORD_TLS_KEY is not"):
        Settings(dev=True, tls_cert=tmp_path / "c.crt")


@pytest.mark.parametrize(("host", "tls_on", "proxy", "refused"), [
    ("0.0.0.0", False, False, True), ("10.1.2.3", False, False, True), ("127.0.0.1", False, False, False),  # noqa: S104
    ("localhost", False, False, False), ("::1", False, False, False), ("0.0.0.0", True, False, False),  # noqa: S104
    ("0.0.0.0", False, True, False),  # noqa: S104
])
def test_plain_http_is_served_on_loopback_or_behind_a_declared_proxy_only(host, tls_on, proxy, refused):
    if refused:
        with pytest.raises(ConfigError, match="TANDEM_COORD_TLS_CERT"):
            tls.check_exposure(host, tls=tls_on, insecure_http=proxy)
    else:
        tls.check_exposure(host, tls=tls_on, insecure_http=proxy)


def test_the_superlink_files_are_checked_like_the_coordinator_s(tmp_path):
    files = make_ca(tmp_path / "ca", ["superlink"])
    other = make_ca(tmp_path / "other", ["superlink"])
    tls.check_training_files(None, None, None)  # unset: the launcher generates loopback-only files
    tls.check_training_files(files.ca, files.cert, files.key)
    with pytest.raises(ConfigError, match="TANDEM_COORD_TRAINING_TLS_CA unset"):
        tls.check_training_files(None, files.cert, files.key)
    with pytest.raises(ConfigError, match="TANDEM_COORD_TRAINING_TLS_KEY: .* does not match"):
        tls.check_training_files(files.ca, files.cert, other.key)
    with pytest.raises(ConfigError, match="TANDEM_COORD_TRAINING_TLS_CA: .* is not the CA that signed"):
        tls.check_training_files(other.ca, files.cert, files.key)


def test_serve_refuses_a_half_configured_superlink_and_leaves_no_state(tmp_path):
    files = make_ca(tmp_path / "ca", ["superlink"])
    done = _serve(tmp_path, "127.0.0.1", TANDEM_COORD_TRAINING_ENABLED="1",
                  TANDEM_COORD_TRAINING_TLS_CERT=str(files.cert), TANDEM_COORD_TRAINING_TLS_KEY=str(files.key))
    assert done.returncode == 2, done.stderr
    assert "TANDEM_COORD_TRAINING_TLS_CA unset" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()
