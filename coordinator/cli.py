"""Command line of the coordinator: ``tandem-coordinator serve | init-db | user create | audit … | public-key``.

Settings come from ``TANDEM_COORD_*`` environment variables (see ``coordinator.settings``). Logging
is configured here, once; tokens are printed to stdout for the operator and never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError

from coordinator import accounts
from coordinator.app import build_context, create_app
from coordinator.audit import chain as audit_chain
from coordinator.audit import log as audit_log
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings
from coordinator.store import SqlStore
from protocols.wire.control import Role, UserCreate

__all__ = ["app", "main"]

app = typer.Typer(help="Tandem coordinator: control plane, catalog, policy, approvals and audit log.",
                  no_args_is_help=True)
user_app = typer.Typer(help="Manage users directly in the database.", no_args_is_help=True)
audit_app = typer.Typer(help="Export and verify the audit log.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
logger = logging.getLogger(__name__)


def _settings(*, serving: bool) -> Settings:
    """Settings from the environment.

    Commands that do not serve HTTP never use the bootstrap token, so for them a missing one is
    replaced by a random throwaway value instead of refusing to start.
    """
    try:
        if serving or os.environ.get("TANDEM_COORD_BOOTSTRAP_TOKEN"):
            return Settings()
        return Settings(bootstrap_token=SecretStr(secrets.token_urlsafe(32)))
    except ValidationError as exc:
        typer.echo(f"configuration error: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8600,
) -> None:
    """Run the coordinator API with uvicorn."""
    import uvicorn

    from coordinator.flower.launcher import TrainingLauncher, TrainingSettings

    api = create_app(_settings(serving=True))
    training = TrainingSettings()
    launcher = TrainingLauncher(api.state.context, training) if training.enabled else None
    if launcher is not None:
        launcher.start()
    try:
        uvicorn.run(api, host=host, port=port, log_config=None)
    finally:
        if launcher is not None:
            launcher.stop()


@app.command("init-db")
def init_db() -> None:
    """Create the database tables (and, on PostgreSQL, the append-only audit trigger)."""
    settings = _settings(serving=False)
    SqlStore.from_url(settings.database_url).close()
    typer.echo(f"database ready: {settings.database_url.split('@')[-1]}")


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Option(help="user name (lowercase, digits, _ or -)")],
    role: Annotated[Role, typer.Option(help="admin, analyst, operator or auditor")],
    party: Annotated[str | None, typer.Option(help="party of an admin/analyst/operator")] = None,
    signing_key: Annotated[str | None, typer.Option(help="auditor's Ed25519 public key (64 hex)")] = None,
    expires_in_days: Annotated[int, typer.Option(help="days until the API token expires (1-3650)")] = 90,
) -> None:
    """Create a user directly in the database and print its API token (shown once)."""
    try:
        body = UserCreate(name=name, role=role, party=party, signing_key=signing_key,
                          expires_in_days=expires_in_days)
        ctx = build_context(_settings(serving=False), announce=False)
        created = accounts.create_user(ctx, "cli", body)
    except (ValidationError, CoordinatorError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    logger.info("user %s created with role %s", created.name, created.role)
    typer.echo(created.token)


@audit_app.command("export")
def audit_export(out: Annotated[Path, typer.Option(help="file to write (JSON Lines)")]) -> None:
    """Export the whole audit log with a freshly signed head."""
    ctx = build_context(_settings(serving=False), announce=False)
    with out.open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(audit_log.export(ctx, "cli"))
    typer.echo(f"wrote {out}; verify with: tandem-coordinator audit verify {out} --key {ctx.audit_key.public_hex}")


@audit_app.command("verify")
def audit_verify(
    file: Annotated[Path, typer.Argument(help="export file (JSON Lines)")],
    key: Annotated[str, typer.Option(help="coordinator's Ed25519 public key, 64 hex (obtained out of band)")],
) -> None:
    """Verify an export offline; exit 0 if intact, 1 if tampered, 2 on usage errors."""
    raise typer.Exit(audit_chain.main(["verify", str(file), "--key", key]))


@app.command("public-key")
def public_key() -> None:
    """Print the coordinator's Ed25519 audit public key (hex)."""
    from coordinator.keys import load_or_create_signing_key

    typer.echo(load_or_create_signing_key(_settings(serving=False).signing_key_path).public_hex)


def main() -> None:
    """Console entry point: configure logging once, then run the command."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
