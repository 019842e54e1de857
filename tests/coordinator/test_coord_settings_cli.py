"""Settings validation, the audit key file, and the command line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from coordinator.app import create_app
from coordinator.cli import app as cli
from coordinator.keys import load_or_create_signing_key
from coordinator.settings import Settings, get_settings
from protocols.wire.errors import ConfigError
from tests.support.coordinator import API, BOOT, TestClient, app_settings


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("TANDEM_COORD_DATABASE_URL", f"sqlite:///{tmp_path}/coord.db")
    monkeypatch.setenv("TANDEM_COORD_SIGNING_KEY_PATH", str(tmp_path / "audit.key"))
    monkeypatch.delenv("TANDEM_COORD_BOOTSTRAP_TOKEN", raising=False)
    monkeypatch.delenv("TANDEM_COORD_DEV", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.parametrize("token", [None, "changethis", "short-token"])
def test_weak_bootstrap_token_is_refused_outside_dev(env, token):
    with pytest.raises(ValidationError, match="BOOTSTRAP_TOKEN"):
        Settings(bootstrap_token=token)
    assert Settings(bootstrap_token=token, dev=True).dev


def test_settings_read_the_prefixed_environment(env, monkeypatch):
    monkeypatch.setenv("TANDEM_COORD_BOOTSTRAP_TOKEN", BOOT)
    monkeypatch.setenv("TANDEM_COORD_MAX_BODY_BYTES", "4096")
    settings = get_settings()
    assert settings.max_body_bytes == 4096 and settings.bootstrap_token.get_secret_value() == BOOT
    assert BOOT not in repr(settings)


def test_audit_key_file_is_private_and_stable(tmp_path):
    path = tmp_path / "sub" / "audit.key"
    first = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.stat().st_size == 32
    assert load_or_create_signing_key(path).public_hex == first.public_hex
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="32 bytes"):
        load_or_create_signing_key(path)


def test_get_settings_override_changes_the_bootstrap_token(tmp_path):
    app = create_app(app_settings(tmp_path))
    app.dependency_overrides[get_settings] = lambda: app_settings(tmp_path, bootstrap_token="n" * 40)
    c = TestClient(app)
    body = {"name": "root", "role": "auditor"}
    assert c.post(f"{API}/users", json=body, headers={"Authorization": f"Bearer {BOOT}"}).status_code == 401
    assert c.post(f"{API}/users", json=body, headers={"Authorization": "Bearer " + "n" * 40}).status_code == 201


@pytest.mark.parametrize("args", [[], ["serve"], ["init-db"], ["user", "create"], ["audit", "export"],
                                  ["audit", "verify"], ["public-key"]])
def test_every_command_has_help(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_cli_user_export_and_verify(env, monkeypatch):
    runner = CliRunner()
    assert runner.invoke(cli, ["init-db"]).exit_code == 0
    created = runner.invoke(cli, ["user", "create", "--name", "alice", "--role", "admin", "--party", "bank"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    refused = runner.invoke(cli, ["user", "create", "--name", "bob", "--role", "auditor", "--party", "bank"])
    assert refused.exit_code == 2 and "auditor belongs to no party" in refused.output
    duplicate = runner.invoke(cli, ["user", "create", "--name", "alice", "--role", "admin", "--party", "bank"])
    assert duplicate.exit_code == 2 and "alice" in duplicate.output

    monkeypatch.setenv("TANDEM_COORD_BOOTSTRAP_TOKEN", BOOT)
    client = TestClient(create_app(Settings()))
    assert client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "alice"

    out = env / "audit.jsonl"
    assert runner.invoke(cli, ["audit", "export", "--out", str(out)]).exit_code == 0
    key = runner.invoke(cli, ["public-key"]).output.strip()
    ok = runner.invoke(cli, ["audit", "verify", str(out), "--key", key])
    assert ok.exit_code == 0 and ok.output.startswith("OK")
    text = out.read_text()
    assert token not in text
    out.write_text(text.replace('"role":"admin"', '"role":"auditor"'))
    assert runner.invoke(cli, ["audit", "verify", str(out), "--key", key]).exit_code == 1


# ---------------------------------------------------------------- the state directory (issue 15)

STATE_FREE_COMMANDS = [["public-key"], ["audit", "export", "--out", "audit.jsonl"],
                       ["user", "create", "--name", "alice", "--role", "admin", "--party", "bank"],
                       ["user", "revoke", "alice"]]


@pytest.fixture
def elsewhere(monkeypatch, tmp_path):
    """A working directory with no coordinator state, and no state settings in the environment."""
    for var in ("DATABASE_URL", "SIGNING_KEY_PATH", "STATE_DIR", "BOOTSTRAP_TOKEN", "DEV", "AUDIT_HEADS_PATH"):
        monkeypatch.delenv(f"TANDEM_COORD_{var}", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args", STATE_FREE_COMMANDS)
def test_a_command_run_from_the_wrong_directory_creates_no_state(elsewhere, args):
    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: no coordinator state in {elsewhere / '.tandem'}")
    assert "--state-dir" in line and "TANDEM_COORD_STATE_DIR" in line and "init-db" in line
    assert list(elsewhere.iterdir()) == []  # no database, no key, no directory


def test_public_key_from_another_directory_is_the_served_key_or_an_error(tmp_path):
    """The trial's failure, as processes: ``public-key`` run elsewhere printed a brand-new key."""
    state, other = tmp_path / "state", tmp_path / "other"
    other.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_COORD_")}

    def coordinator(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=cwd, env={**env, **extra},
                              capture_output=True, text=True, timeout=120, check=False)

    made = coordinator("--state-dir", str(state), "init-db", cwd=tmp_path)
    lost = coordinator("public-key", cwd=other)
    by_option = coordinator("--state-dir", str(state), "public-key", cwd=other)
    by_env = coordinator("public-key", cwd=other, TANDEM_COORD_STATE_DIR=str(state))

    assert made.returncode == 0 and f"database sqlite:///{state}/coordinator.db" in made.stdout
    assert f"audit key {state}/coordinator_signing.key" in made.stdout
    assert lost.returncode == 2 and "no coordinator state in" in lost.stderr and "Traceback" not in lost.stderr
    assert list(other.iterdir()) == []
    key = load_or_create_signing_key(state / "coordinator_signing.key").public_hex
    assert by_option.stdout.strip() == by_env.stdout.strip() == key


def test_user_create_prints_where_the_state_is_and_the_token_works_there(elsewhere, monkeypatch):
    state = elsewhere / "coord-state"
    runner = CliRunner()
    assert runner.invoke(cli, ["--state-dir", str(state), "init-db"]).exit_code == 0
    monkeypatch.setenv("TANDEM_COORD_STATE_DIR", str(state))

    created = runner.invoke(cli, ["user", "create", "--name", "alice", "--role", "admin", "--party", "bank"])

    assert created.exit_code == 0, created.output
    assert (f"state: database sqlite:///{state}/coordinator.db, audit key {state}/coordinator_signing.key"
            in created.output)
    token = created.output.strip().splitlines()[-1]
    client = TestClient(create_app(Settings(state_dir=state, bootstrap_token=BOOT)))
    assert client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "alice"


def test_settings_put_the_database_and_key_inside_the_state_dir(elsewhere, monkeypatch):
    monkeypatch.setenv("TANDEM_COORD_STATE_DIR", "/srv/tandem")
    settings = Settings(dev=True)
    assert (settings.database_url, settings.signing_key_path) == (
        "sqlite:////srv/tandem/coordinator.db", Path("/srv/tandem/coordinator_signing.key"))
    monkeypatch.setenv("TANDEM_COORD_DATABASE_URL", "postgresql+psycopg://tandem@db/tandem")
    assert Settings(dev=True).database_url == "postgresql+psycopg://tandem@db/tandem"
