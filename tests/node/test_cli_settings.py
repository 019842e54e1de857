"""Node settings are visible: every command's --help, the README, the example env files and ``config show``."""

from __future__ import annotations

import re

import click
import pytest
import typer
from typer.testing import CliRunner

from bank_node.cli import main as bank_main
from bank_node.settings import BankSettings
from coordinator.cli import app as coordinator_app
from coordinator.settings import Settings
from node.cli import family_settings_rows, settings_rows
from node.settings import DEFAULT_COORDINATOR_URL, NodeSettings
from telco_node.cli import main as telco_main
from telco_node.settings import TelcoSettings
from tests.support.live_coordinator import ROOT

runner = CliRunner()
README = (ROOT / "README.md").read_text()


def _using_it() -> str:
    return README.split("## Using it", 1)[1].split("\n## ", 1)[0]


def _leaf_commands(app: typer.Typer) -> list[list[str]]:
    """The path of every command (not group) of a typer app."""
    found: list[list[str]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found.append(path)

    walk(typer.main.get_command(app), [])
    return found


JOB_SETTINGS = ("API_TOKEN", "COORDINATOR_URL", "COORDINATOR_CA")
"""The job commands read the token and the coordinator's address only (``node.job_cli``)."""


@pytest.mark.parametrize(("app", "settings_cls"), [(bank_main, BankSettings), (telco_main, TelcoSettings)])
def test_every_node_command_help_lists_every_setting(app, settings_cls):
    names = [var for var, _, _ in settings_rows(settings_cls)]
    assert len(names) == len(settings_cls.model_fields)
    assert all(meaning for _, _, meaning in settings_rows(settings_cls))
    prefix = settings_cls.model_config["env_prefix"]
    commands = _leaf_commands(app)
    assert ["config", "show"] in commands and ["register-dataset"] in commands and ["job", "submit"] in commands
    families = [var for var, _, _ in family_settings_rows(settings_cls)]  # training's and scoring's own settings
    assert {f"{prefix}TRAINING_SUPERLINK", "TANDEM_SCORING_ROWS_PER_CALL"} <= set(families)
    assert all(meaning for _, _, meaning in family_settings_rows(settings_cls))
    for path in [[], *commands]:
        if path == ["job", "auditor-key"]:  # writes a local key file, reads no setting
            continue
        reads = [prefix + s for s in JOB_SETTINGS] + ["TANDEM_API_TOKEN"] if path[:1] == ["job"] else names + families
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, path
        missing = [n for n in reads if n not in result.output]
        assert not missing, (path, missing)


def test_every_coordinator_command_help_lists_every_setting():
    names = [f"TANDEM_COORD_{n.upper()}" for n in Settings.model_fields]
    reads_files_only = ("verify", "cross-check", "init", "issue")  # audit/report verify, cross-check, certs: files
    for path in [p for p in _leaf_commands(coordinator_app) if p[-1] not in reads_files_only]:
        result = runner.invoke(coordinator_app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, path
        missing = [n for n in names if n not in result.output]
        assert not missing, (path, missing)
    assert "TANDEM_COORD_STATE_DIR" in runner.invoke(coordinator_app, ["--help"], terminal_width=200).output


def test_the_readme_lists_every_job_family_setting():
    section = _using_it()
    prefix = BankSettings.model_config["env_prefix"]
    missing = [var for var, _, _ in family_settings_rows(BankSettings)
               if f"`{var.removeprefix(prefix)}`" not in section]
    assert missing == []


def test_the_readme_lists_every_node_and_coordinator_setting():
    section = _using_it()
    node_missing = [n for n in NodeSettings.model_fields if f"`{n.upper()}`" not in section]
    coord_missing = [n for n in Settings.model_fields if f"TANDEM_COORD_{n.upper()}" not in section]
    assert not node_missing and not coord_missing, (node_missing, coord_missing)
    for var, default, _ in settings_rows(BankSettings):
        row = re.search(rf"`{var.removeprefix('TANDEM_BANK_')}` \| ([^|]*) \|", section)
        assert row is not None, var
        if var not in ("TANDEM_BANK_PARTY", "TANDEM_BANK_KIND", "TANDEM_BANK_LISTEN_PORT"):  # per node
            assert default in row.group(1), (var, default, row.group(1))


@pytest.mark.parametrize(("settings_cls", "env_file"), [(BankSettings, "bank.env"), (TelcoSettings, "telco.env")])
def test_the_example_env_files_load_and_use_the_documented_ports(settings_cls, env_file, monkeypatch):
    for name in settings_cls.model_fields:
        monkeypatch.delenv(f"{settings_cls.model_config['env_prefix']}{name.upper()}", raising=False)
    settings = settings_cls(_env_file=ROOT / "examples" / env_file)
    assert settings.coordinator_url == DEFAULT_COORDINATOR_URL == "http://127.0.0.1:8600"
    assert settings.listen_port == (8443 if settings_cls is BankSettings else 8444)
    assert settings.party == settings_cls.model_fields["party"].default


def test_ports_do_not_collide():
    ports = {"coordinator": 8600, "bank data plane": BankSettings.model_fields["listen_port"].default,
             "telco data plane": TelcoSettings.model_fields["listen_port"].default,
             "bank scoring": BankSettings.model_fields["scoring_port"].default}
    assert len(set(ports.values())) == len(ports), ports
    assert DEFAULT_COORDINATOR_URL.endswith(":8600")


def test_config_show_prints_every_setting_with_secrets_masked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_BANK_API_TOKEN", "a-very-secret-token-0123")
    monkeypatch.setenv("TANDEM_BANK_SCORING_API_KEY", "another-secret-key-4567")

    result = runner.invoke(bank_main, ["config", "show"])

    assert result.exit_code == 0, result.output
    assert "secret" not in result.output
    assert "TANDEM_BANK_API_TOKEN=********" in result.output and "TANDEM_BANK_SCORING_PORT=8610" in result.output
    assert "TANDEM_BANK_STATE_DIR=.tandem/bank" in result.output
    assert "# TANDEM_BANK_COORDINATOR_CA unset" in result.output
    assert len(result.output.strip().splitlines()) == len(BankSettings.model_fields)
