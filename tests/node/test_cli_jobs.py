"""The ``job`` commands and ``approve`` through a real coordinator process, nodes set up with their own CLI.

One coordinator (``python -m coordinator.cli serve``) for the module; the bank and telco CLIs ``init``
their parties and register the synthetic population under the demo's governance files, exactly as the
README says; an analyst then works only from the job files in ``examples/jobs/``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bank_node.settings import BankSettings
from demo.steps import GOVERNANCE
from demo.synthetic import generate
from node.cli import build_cli
from telco_node.settings import TelcoSettings
from tests.support.coordinator import BOOT
from tests.support.live_coordinator import ROOT, LiveCoordinator

EXAMPLES = ROOT / "examples" / "jobs"
runner = CliRunner()
bank_cli, telco_cli = build_cli(BankSettings, "bank"), build_cli(TelcoSettings, "telco")


class Federation:
    """A live coordinator, the bank and telco registered by their CLIs, users' tokens."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.coordinator = LiveCoordinator(tmp / "coord")
        self.coordinator.state_dir.mkdir(mode=0o700)
        assert self.coordinator.start() is None, self.coordinator.output()
        self.tokens = {name: self._user(name, role, party) for name, role, party in (
            ("bank-admin", "admin", "bank"), ("telco-admin", "admin", "telco"), ("bank-analyst", "analyst", "bank"))}

    def _user(self, name: str, role: str, party: str) -> str:
        r = httpx.post(f"{self.coordinator.url}/api/v1/users", json={"name": name, "role": role, "party": party},
                       headers={"Authorization": f"Bearer {BOOT}"}, timeout=30)
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def env(self, party: str) -> dict[str, str]:
        prefix = f"TANDEM_{party.upper()}_"
        return {f"{prefix}API_TOKEN": self.tokens[f"{party}-admin"], f"{prefix}STATE_DIR": str(self.tmp / party),
                f"{prefix}COORDINATOR_URL": self.coordinator.url, "TANDEM_API_TOKEN": None,
                "TANDEM_COORDINATOR_URL": None}

    def analyst(self) -> dict[str, str]:
        return {"TANDEM_API_TOKEN": self.tokens["bank-analyst"], "TANDEM_COORDINATOR_URL": self.coordinator.url,
                "TANDEM_BANK_API_TOKEN": None}

    def jobs(self) -> list[dict]:
        r = httpx.get(f"{self.coordinator.url}/api/v1/jobs", timeout=30,
                      headers={"Authorization": f"Bearer {self.tokens['bank-admin']}"})
        return list(r.json())


def run(cli, args: list[str], env: dict[str, str | None], code: int = 0) -> str:  # noqa: ANN001
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobs")
    f = Federation(tmp)
    try:
        data = tmp / "data"
        generate(n=600, seed=7, out_dir=data, progress=False)
        for cli, party, names in ((bank_cli, "bank", ["bank_customers", "bank_lost_contacts"]),
                                  (telco_cli, "telco", ["telco_subscribers"])):
            run(cli, ["init"], f.env(party))
            for name in names:
                run(cli, ["register-dataset", "--source", f"csv://{data / name}.csv",
                          "--governance", str(GOVERNANCE / f"{name}.yaml")], f.env(party))
        yield f
    finally:
        f.coordinator.stop()


def test_an_analyst_submits_from_yaml_and_every_output_names_datasets(fed):
    before = len(fed.jobs())

    out = run(bank_cli, ["job", "submit", str(EXAMPLES / "audience_overlap.yaml")], fed.analyst())
    job_id = int(out.split()[1])
    listed = run(bank_cli, ["job", "list"], fed.analyst())
    shown = run(bank_cli, ["job", "show", str(job_id)], fed.analyst())

    assert f"job {job_id} submitted: pending_approval" in out and len(fed.jobs()) == before + 1
    assert f"{job_id}\tpending_approval\taudience_overlap" in listed
    assert "bank/bank_customers + telco/telco_subscribers" in listed
    assert "bank/bank_customers" in shown and "id_number (level 4)" in shown
    assert "filter: app_bank == 0 and age >= 25 and age <= 45" in shown
    assert "dataset #" not in listed + shown
    assert "party:bank (waiting)" in shown


def test_every_example_job_file_resolves_against_the_catalog(fed):
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.stem == "site_selection":  # needs the bank's branches dataset, not in this catalog
            result = runner.invoke(bank_cli, ["job", "submit", str(path)], env=fed.analyst())
            assert result.exit_code == 2 and "inputs.1.dataset: no dataset named 'bank_branches'" in result.output
            continue
        result = runner.invoke(bank_cli, ["job", "submit", str(path)], env=fed.analyst())
        assert result.exit_code in (0, 1), (path.name, result.output)  # 1: a policy rejection, with its rules
        assert "submitted" in result.output, (path.name, result.output)


def test_approve_shows_the_terms_in_words_and_signs(fed):
    out = run(bank_cli, ["job", "submit", str(EXAMPLES / "audience_overlap.yaml")], fed.analyst())
    job_id = int(out.split()[1])

    shown = run(bank_cli, ["approve", str(job_id), "--yes"], fed.env("bank"))

    assert "kind audience_overlap, purpose app_promotion, parties bank, telco" in shown
    assert "telco/telco_subscribers" in shown and "match keys: id_number (level 4)" in shown
    assert "k (smallest released count): 50" in shown and "ε: 0.5 (noised release" in shown
    assert "bank: the (noised, k-suppressed) count" in shown and "telco: the bank's set size" in shown
    assert "null" not in shown and '"dataset_id"' not in shown
    assert f"job {job_id} approved by party:bank" in shown


def test_cancel_and_results(fed):
    out = run(bank_cli, ["job", "submit", str(EXAMPLES / "audience_overlap.yaml")], fed.analyst())
    job_id = int(out.split()[1])

    pending = runner.invoke(bank_cli, ["job", "results", str(job_id)], env=fed.analyst())
    cancelled = run(bank_cli, ["job", "cancel", str(job_id)], fed.analyst())

    assert pending.exit_code == 1 and f"job {job_id} is pending_approval" in pending.output
    assert f"job {job_id} cancelled" in cancelled
    assert "cancelled" in run(bank_cli, ["job", "show", str(job_id)], fed.env("bank"))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("kind: audience_overlap", "kind: audience_overlp"),
     "kind: 'audience_overlp' is not valid; did you mean 'audience_overlap'?"),
    (lambda t: t.replace("key_fields: [id_number]            # PSI", "key_feld: [id_number]  # PSI"),
     "unknown field inputs.0.key_feld; did you mean 'key_fields'?"),
    (lambda t: t.replace("min_cell: 50", "min_cel: 50"), "unknown field params.min_cel; did you mean 'min_cell'?"),
    (lambda t: t.replace("dataset: telco_subscribers", "dataset: telco_subscriber"),
     "inputs.1.dataset: no dataset named 'telco_subscriber'; did you mean 'telco_subscribers'?"),
])
def test_a_bad_job_file_is_one_line_naming_the_field_and_nothing_is_submitted(fed, tmp_path, edit, message):
    bad = tmp_path / "job.yaml"
    bad.write_text(edit((EXAMPLES / "audience_overlap.yaml").read_text()))
    before = len(fed.jobs())

    result = runner.invoke(bank_cli, ["job", "submit", str(bad)], env=fed.analyst())

    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output
    assert "fix:" in result.output or "did you mean" in result.output
    assert len(fed.jobs()) == before


def test_dry_run_never_submits(fed):
    before = len(fed.jobs())

    result = runner.invoke(bank_cli, ["job", "submit", "--dry-run", str(EXAMPLES / "audience_overlap.yaml")],
                           env=fed.analyst())

    assert len(fed.jobs()) == before
    if result.exit_code == 2:  # a coordinator without the endpoint: said so, nothing sent to POST /jobs
        assert "no dry-run endpoint (POST /api/v1/jobs/dry-run); nothing was submitted" in result.output
    else:
        assert result.exit_code == 0 and "ALLOWED" in result.output and "needs approval by:" in result.output


def test_without_a_token_the_error_names_each_way_to_give_one(fed):
    result = runner.invoke(bank_cli, ["job", "list"], env={**fed.analyst(), "TANDEM_API_TOKEN": None})
    assert result.exit_code == 2
    assert result.output.strip() == ("error: no API token: pass --token, or set TANDEM_API_TOKEN (your own) "
                                     "or TANDEM_BANK_API_TOKEN (the node's)")
    listed = runner.invoke(bank_cli, ["job", "--token", fed.tokens["bank-analyst"], "list"],
                           env={**fed.analyst(), "TANDEM_API_TOKEN": None})
    assert listed.exit_code == 0, listed.output


def test_the_token_never_travels_over_plain_http_off_loopback(fed):
    result = runner.invoke(bank_cli, ["job", "--coordinator-url", "http://coordinator.example:8600", "list"],
                           env=fed.analyst())
    assert result.exit_code == 2 and "loopback only; use https://" in result.output


def test_status_reports_health_with_exit_codes_a_monitor_can_use(fed):
    healthy = runner.invoke(bank_cli, ["status"], env=fed.env("bank"))
    down = runner.invoke(bank_cli, ["status"], env={**fed.env("bank"), "TANDEM_BANK_COORDINATOR_URL":
                                                    "http://127.0.0.1:9"})
    full = runner.invoke(bank_cli, ["status", "--min-free-gb", "1e9"], env=fed.env("bank"))

    assert healthy.exit_code == 0, healthy.output
    assert f"coordinator {fed.coordinator.url}: reachable; jobs for bank:" in healthy.output
    assert "peer telco at https://localhost:8444: not pinned yet" in healthy.output
    assert "egress ledger: " in healthy.output and "GB free in the state directory" in healthy.output
    assert down.exit_code == 1 and "problem: coordinator http://127.0.0.1:9: cannot reach" in down.output
    assert full.exit_code == 1 and "problem: disk:" in full.output


def test_compliance_signs_with_its_own_key_and_a_wrong_key_is_refused(fed, tmp_path):
    key, other = tmp_path / "compliance.key", tmp_path / "other.key"
    public = run(bank_cli, ["job", "auditor-key", "--out", str(key)], {}).strip()
    run(bank_cli, ["job", "auditor-key", "--out", str(other)], {})
    again = runner.invoke(bank_cli, ["job", "auditor-key", "--out", str(key)])
    r = httpx.post(f"{fed.coordinator.url}/api/v1/users", timeout=30, headers={"Authorization": f"Bearer {BOOT}"},
                   json={"name": f"compliance-{public[:6]}", "role": "auditor", "signing_key": public})
    officer = {**fed.analyst(), "TANDEM_API_TOKEN": r.json()["token"]}
    job_id = int(run(bank_cli, ["job", "submit", "-q", str(EXAMPLES / "audience_overlap.yaml")], fed.analyst()))

    wrong = runner.invoke(bank_cli, ["job", "approve", str(job_id), "--auditor-key", str(other), "--yes"], env=officer)
    signed = run(bank_cli, ["job", "approve", str(job_id), "--auditor-key", str(key), "--yes"], officer)

    assert len(public) == 64 and oct(key.stat().st_mode & 0o777) == "0o600"
    assert again.exit_code == 2 and "never overwrites" in again.output
    assert wrong.exit_code == 2 and "signature does not verify" in wrong.output
    assert "bank/bank_customers" in signed and f"job {job_id} approved by auditor: pending_approval" in signed
    assert "auditor (signed)" in run(bank_cli, ["job", "show", str(job_id)], fed.analyst())
