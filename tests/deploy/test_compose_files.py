"""The deployment compose files, read as the harness reads them (no root, no processes): what a real
deployment relies on is there, and the reader does what compose does with variables.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.compose_file import ComposeError, ComposeProject, interpolate

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ORGS = ("coordinator", "bank", "telco")


def _project(org: str, tmp_path: Path, env: dict[str, str] | None = None) -> ComposeProject:
    (tmp_path / ".env").write_text((DEPLOY / org / ".env.example").read_text())
    return ComposeProject.load(DEPLOY / org / "compose.yml", tmp_path, env)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [("${A:-d}", {}, "d"), ("${A:-d}", {"A": ""}, "d"), ("${A-d}", {"A": ""}, ""), ("${A}x", {"A": "1"}, "1x"),
     ("$$A", {"A": "1"}, "$A"), ("$A/b", {"A": "1"}, "1/b"), ("${A:?e}", {"A": "v"}, "v")],
)
def test_interpolation_follows_compose(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_a_missing_required_variable_names_it() -> None:
    with pytest.raises(ComposeError, match="TOKEN: set it"):
        interpolate("${TOKEN:?set it}", {"TOKEN": ""})


@pytest.mark.parametrize("org", ORGS)
def test_every_long_running_service_has_a_health_check_and_init_steps_run_once(org: str, tmp_path: Path) -> None:
    project = _project(org, tmp_path)
    for name, svc in project.services.items():
        assert svc.argv or svc.is_postgres, f"{org}/{name} has no command"
        assert svc.one_shot or svc.healthcheck is not None, f"{org}/{name} has no health check"
    inits = [n for n, s in project.services.items() if s.one_shot]
    assert inits, f"{org} has no init step"
    for name, svc in project.services.items():
        for dep, condition in svc.depends_on.items():
            if dep in inits:
                assert condition == "service_completed_successfully", f"{org}/{name} -> {dep}"


@pytest.mark.parametrize("org", ["bank", "telco"])
def test_node_data_is_read_only_and_state_is_a_named_volume(org: str, tmp_path: Path) -> None:
    node = _project(org, tmp_path).services["node"]
    mounts = {m.target: m for m in node.mounts}
    assert mounts["/data"].read_only and mounts["/trust"].read_only
    assert mounts["/state"].named and not mounts["/state"].read_only
    env = node.environment
    prefix = f"TANDEM_{org.upper()}_"
    assert env[prefix + "COORDINATOR_URL"].startswith("https://")
    assert env[prefix + "COORDINATOR_CA"] == env[prefix + "TRAINING_SUPERLINK_CA"] == "/trust/coordinator-ca.crt"
    assert env[prefix + "TRAINING_SUPERNODE_KEY"].startswith("/state/")


def test_coordinator_serves_tls_on_postgres_and_exposes_only_api_and_fleet(tmp_path: Path) -> None:
    project = _project("coordinator", tmp_path)
    coord = project.services["coordinator"]
    env = coord.environment
    assert env["TANDEM_COORD_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env[
        "TANDEM_COORD_DATABASE_URL"]
    assert env["TANDEM_COORD_TLS_CERT"] and env["TANDEM_COORD_TLS_KEY"]
    assert env["TANDEM_COORD_TRAINING_ENABLED"] == "1" and env["TANDEM_COORD_TRAINING_SUPERNODE_KEYS"]
    assert sorted(coord.spec["ports"]) == ["8600:8600", "9092:9092"]
    assert project.services["postgres"].is_postgres and "ports" not in project.services["postgres"].spec


@pytest.mark.parametrize("org", ORGS)
def test_a_missing_secret_stops_the_file_from_loading(org: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("")
    with pytest.raises(ComposeError, match="Missing mandatory value"):
        ComposeProject.load(DEPLOY / org / "compose.yml", tmp_path)
