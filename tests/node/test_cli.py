"""The shared node CLI, through bank_node/telco_node, against a fake coordinator."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bank_node.settings import BankSettings
from node.cli import build_cli
from protocols.wire.control import DatasetPublic, FieldSpec, JobKind
from telco_node.settings import TelcoSettings
from tests.support.fake_coordinator import NOW, FakeCoordinator, make_job

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_BANK_API_TOKEN", "bank-admin-token")
    monkeypatch.setenv("TANDEM_BANK_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@pytest.fixture
def coordinator():
    return FakeCoordinator()


@pytest.fixture
def cli(coordinator):
    return build_cli(BankSettings, "bank", transport=coordinator.transport(),
                     handlers={JobKind.AUDIENCE_OVERLAP: lambda ctx: {"overlap": 1}})


def _ok(cli, *args, input=None):
    result = runner.invoke(cli, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_has_help(cli):
    jobs = [["job", c, "--help"] for c in ("submit", "list", "show", "results", "cancel", "retry", "approve",
                                           "auditor-key")]
    for args in (["--help"], ["init", "--help"], ["register-dataset", "--help"], ["datasets", "--help"],
                 ["approve", "--help"], ["serve", "--help"], ["run-once", "--help"], ["config", "show", "--help"],
                 ["status", "--help"], ["job", "--help"], *jobs, ["ledger", "verify", "--help"],
                 ["ledger", "export", "--help"]):
        assert runner.invoke(cli, args).exit_code == 0, args


def test_init_registers_the_party_and_is_idempotent(env, cli, coordinator):
    out = _ok(cli, "init")
    assert "party bank (bank) registered at https://localhost:8443" in out
    first = coordinator.parties["bank"]
    _ok(cli, "init")
    assert coordinator.parties["bank"].tls_fingerprint == first.tls_fingerprint
    assert coordinator.parties["bank"].signing_key == first.signing_key


def test_register_dataset_then_list(env, cli, coordinator):
    _ok(cli, "init")
    (env / "c.csv").write_text("mobile,age\n13912345678,37\n13587654321,58\n")
    (env / "g.yaml").write_text("dataset: customers\nfields:\n"
                                "  mobile: {type: string, category: identifier, security_level: 3, key_type: mobile}\n"
                                "  age: {type: integer, category: feature, security_level: 2}\n")
    out = _ok(cli, "register-dataset", "--source", f"csv://{env / 'c.csv'}", "--governance", str(env / "g.yaml"))
    assert "dataset customers registered as id 1: 2 rows, 2 fields" in out
    assert b"13912345678" not in b"".join(coordinator.bodies)
    assert "customers" in _ok(cli, "datasets")


def test_register_dataset_reports_coordinator_errors_in_one_line(env, cli):
    _ok(cli, "init")
    (env / "c.csv").write_text("mobile\n1\n")
    (env / "g.yaml").write_text("dataset: rejected\nfields:\n  mobile: {type: string, category: identifier, "
                                "security_level: 1, key_type: mobile}\n")
    result = runner.invoke(cli, ["register-dataset", "--source", f"csv://{env / 'c.csv'}",
                                 "--governance", str(env / "g.yaml")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: fields.mobile.security_level: security_level 1 is too low for an identifier "
        "(fix: set security_level >= 3)"]


def _catalog(coordinator: FakeCoordinator) -> None:
    for i, (party, name, key) in enumerate((("bank", "customers", "mobile"), ("telco", "subscribers", "msisdn")), 1):
        coordinator.datasets[i] = DatasetPublic(
            id=i, party=party, name=name, description="", row_count=1000, schema_digest="0" * 64, created_at=NOW,
            fields=[FieldSpec(name=key, type="string", category="identifier", security_level=4, key_type="mobile")])


def test_approve_signs_the_recomputed_digest_and_run_once_runs_it(env, cli, coordinator):
    _ok(cli, "init")
    _catalog(coordinator)
    coordinator.jobs[3] = make_job(3)
    out = _ok(cli, "approve", "3", input="y\n")
    assert "kind audience_overlap, purpose marketing, parties bank, telco" in out
    assert "bank/customers (1,000 rows)" in out and "match keys: msisdn (level 4)" in out
    assert coordinator.jobs[3].digest in out
    assert "job 3 approved by party:bank" in out
    assert "job 3: succeeded" in _ok(cli, "run-once")
    assert coordinator.results[-1][1].outputs == {"overlap": 1}


def test_approve_refuses_when_the_coordinator_digest_disagrees(env, cli, coordinator):
    _ok(cli, "init")
    _catalog(coordinator)
    coordinator.jobs[4] = make_job(4).model_copy(update={"digest": "00" * 32})
    result = runner.invoke(cli, ["approve", "4", "--yes"])
    assert result.exit_code == 2 and "do not approve" in result.output
    assert coordinator.jobs[4].approvals == []


def test_retry_asks_the_coordinator_to_run_a_failed_job_again(env, cli, coordinator):
    _ok(cli, "init")
    coordinator.jobs[5] = make_job(5).model_copy(update={"status": "failed"})

    out = _ok(cli, "job", "retry", "5", "--reason", "telco node restarted")
    refused = runner.invoke(cli, ["job", "retry", "5"])  # waiting for approvals of attempt 2 now, not failed

    assert "job 5 retried as attempt 2: pending_approval" in out
    assert coordinator.retries == [(5, {"reason": "telco node restarted"})]
    assert refused.exit_code == 2 and "only a failed job can be retried" in refused.output


def test_ledger_verify_and_export(env, cli):
    _ok(cli, "init")
    assert "ledger ok: 1 records" in _ok(cli, "ledger", "verify")
    out = env / "ledger.jsonl"
    assert "exported 1 records" in _ok(cli, "ledger", "export", "--out", str(out))
    assert json.loads(out.read_text().splitlines()[0])["body"]["kind"] == "upsert_party"


def test_errors_are_one_line_with_exit_code_2(env, cli, monkeypatch):
    result = runner.invoke(cli, ["datasets"])
    assert result.exit_code == 2 and "run `init` first" in result.output
    monkeypatch.delenv("TANDEM_BANK_API_TOKEN")
    result = runner.invoke(cli, ["datasets"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: setting TANDEM_BANK_API_TOKEN: Field required (set it in the environment or .env)")
    assert "Traceback" not in result.output


def test_settings_prefixes_and_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("TANDEM_TELCO_API_TOKEN", "telco-token")
    monkeypatch.setenv("TANDEM_BANK_API_TOKEN", "bank-token")
    telco, bank = TelcoSettings(), BankSettings()
    assert (telco.party, telco.kind, telco.listen_port, telco.public_url) == (
        "telco", "telco", 8444, "https://localhost:8444")
    assert (bank.party, bank.listen_port, str(bank.state_path)) == ("bank", 8443, ".tandem/bank")
    assert bank.api_token.get_secret_value() not in repr(bank)


@pytest.mark.parametrize(
    ("env_update", "message"),
    [
        ({"TANDEM_BANK_COORDINATOR_URL": "http://coordinator.example:8000"}, "loopback only"),
        ({"TANDEM_BANK_API_TOKEN": "changeme"}, "placeholder"),
        ({"TANDEM_BANK_NODE_URL": "http://localhost:8443"}, "https"),
    ],
)
def test_unsafe_settings_are_refused(env, cli, monkeypatch, env_update, message):
    for key, value in env_update.items():
        monkeypatch.setenv(key, value)
    result = runner.invoke(cli, ["datasets"])
    assert result.exit_code == 2 and message in result.output


def test_bank_and_telco_share_every_function():
    import bank_node.cli
    import telco_node.cli

    for module in (bank_node.cli, telco_node.cli):
        own = [name for name, obj in vars(module).items() if callable(obj) and getattr(obj, "__module__", "")
               == module.__name__]
        assert own == []
