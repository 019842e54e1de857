"""``register-dataset --scaffold`` on the synthetic files, and the published governance JSON Schema."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from bank_node.settings import BankSettings
from demo.synthetic import generate
from node.cli import build_cli
from node.governance_scaffold import governance_json_schema
from tests.support.fake_coordinator import FakeCoordinator
from tests.support.live_coordinator import ROOT

runner = CliRunner()
PURPOSE_FOR = {"identifier": "marketing", "feature": "risk", "label": "risk", "sensitive": "recovery"}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_BANK_API_TOKEN", "bank-admin-token")
    monkeypatch.setenv("TANDEM_BANK_STATE_DIR", str(tmp_path / "state"))
    generate(n=400, seed=3, out_dir=tmp_path / "data", progress=False)
    return tmp_path


def _fill_todo(text: str) -> str:
    """What the reviewer does: replace each TODO marker, and nothing else."""
    lines = []
    for line in text.splitlines():
        category = re.search(r"category: (\w+)", line)
        line = line.replace("[TODO]", f"[{PURPOSE_FOR[category.group(1)]}]") if category else line
        lines.append(line.replace("TODO describe the dataset", "Synthetic population"))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", ["bank_customers", "bank_lost_contacts", "telco_subscribers"])
def test_a_scaffold_registers_once_its_todo_markers_are_replaced(env, name):
    coordinator = FakeCoordinator()
    cli = build_cli(BankSettings, "bank", transport=coordinator.transport())
    source, governance = f"csv://{env / 'data' / name}.csv", env / f"{name}.yaml"
    assert runner.invoke(cli, ["init"]).exit_code == 0

    scaffolded = runner.invoke(cli, ["register-dataset", "--source", source, "--governance", str(governance),
                                     "--scaffold"])
    refused = runner.invoke(cli, ["register-dataset", "--source", source, "--governance", str(governance)])
    governance.write_text(_fill_todo(governance.read_text()))
    registered = runner.invoke(cli, ["register-dataset", "--source", source, "--governance", str(governance)])

    assert scaffolded.exit_code == 0 and f"wrote {governance}" in scaffolded.output, scaffolded.output
    assert refused.exit_code == 2 and "still has TODO markers at line" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert registered.exit_code == 0, registered.output
    assert f"dataset {name} registered" in registered.output
    fields = {f.name: f for f in coordinator.datasets[1].fields}
    assert fields["id_number"].key_type == "id_number" and fields["id_number"].security_level == 4
    if name == "bank_customers":
        assert fields["default_flag"].category == "label" and fields["balance"].type == "float"
        assert fields["age"].type == "integer"


def test_scaffold_never_overwrites_a_governance_file(env):
    cli = build_cli(BankSettings, "bank", transport=FakeCoordinator().transport())
    existing = env / "g.yaml"
    existing.write_text("dataset: mine\n")
    result = runner.invoke(cli, ["register-dataset", "--source", f"csv://{env / 'data' / 'bank_customers.csv'}",
                                 "--governance", str(existing), "--scaffold"])
    assert result.exit_code == 2 and "exists" in result.output and existing.read_text() == "dataset: mine\n"


def test_the_published_json_schema_is_generated_from_the_governance_model():
    published = (ROOT / "docs" / "governance.schema.json").read_text()
    assert published == governance_json_schema(), (
        "docs/governance.schema.json is out of date: python -m node.governance_scaffold > docs/governance.schema.json")
    schema = json.loads(published)
    assert schema["required"] == ["dataset", "fields"] and schema["additionalProperties"] is False
