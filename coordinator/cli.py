"""Command line of the coordinator: ``tandem-coordinator serve | init-db | user create|revoke | audit … | public-key``.

Settings come from ``TANDEM_COORD_*`` environment variables (see ``coordinator.settings``; every command's
``--help`` lists them). The state directory (``--state-dir`` or ``TANDEM_COORD_STATE_DIR``) holds the
database and the audit key; only ``serve`` and ``init-db`` create them, every other command refuses a
missing one (exit 2, naming the state directory and the fix) instead of starting an empty coordinator.
Logging is configured here, once; tokens are printed to stdout for the operator and never logged.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError

from coordinator import accounts
from coordinator.app import build_context, create_app
from coordinator.audit import chain as audit_chain
from coordinator.audit import log as audit_log
from coordinator.errors import CoordinatorError
from coordinator.policy import parse_policy, read_policy_text
from coordinator.settings import Settings
from coordinator.store import SqlStore
from protocols.wire.control import Role, UserCreate
from protocols.wire.errors import ConfigError
from protocols.wire.logs import LOG_FORMATS, configure_logging

__all__ = ["app", "main"]



def _attributes(cls: type) -> dict[str, str]:
    """The ``Attributes:`` section of a settings class docstring, by field name (one place for the meanings)."""
    section = inspect.cleandoc(cls.__doc__ or "").split("Attributes:", 1)[-1]
    found: dict[str, str] = {}
    for m in re.finditer(r"^ {4}(\w+(?: / \w+)*): (.+?)(?=^ {4}\w|\Z)", section, re.M | re.S):
        for name in m.group(1).split(" / "):
            found[name] = " ".join(m.group(2).split())
    return found


def settings_help(*classes: type[Any]) -> str:
    """Every setting the classes read: environment variable, default and meaning."""
    rows = []
    for cls in classes:
        prefix, meanings = cls.model_config.get("env_prefix", ""), _attributes(cls)
        for name, info in cls.model_fields.items():
            default = "required" if info.is_required() else info.get_default(call_default_factory=True)
            shown = "unset" if default is None else default
            rows.append(f"{prefix}{name.upper()} (default {shown}): {meanings.get(name, '')}")
    return "Settings (environment):\n\n" + "\n\n".join(rows)


EPILOG = settings_help(Settings)
app = typer.Typer(help="Tandem coordinator: control plane, catalog, policy, approvals and audit log.",
                  no_args_is_help=True, epilog=EPILOG)
user_app = typer.Typer(help="Manage users directly in the database.", no_args_is_help=True)
audit_app = typer.Typer(help="Export and verify the audit log.", no_args_is_help=True)
report_app = typer.Typer(help="Compliance reports: write one (PDF or HTML) or verify one against an audit export.",
                         invoke_without_command=True)
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
certs_app = typer.Typer(help="A private CA for evaluation: certificates for the coordinator's HTTPS and the SuperLink.",
                        no_args_is_help=True)
app.add_typer(report_app, name="report")
app.add_typer(certs_app, name="certs")
logger = logging.getLogger(__name__)
_overrides: dict[str, Any] = {}


@app.callback()
def _main(state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", envvar="TANDEM_COORD_STATE_DIR", show_envvar=False,
        help="the coordinator's state directory (database and audit key), or TANDEM_COORD_STATE_DIR; default "
             ".tandem in the working directory. Give it before the command: tandem-coordinator --state-dir DIR "
             "user create ...")] = None,
          log_format: Annotated[str, typer.Option(
              "--log-format", envvar="TANDEM_LOG_FORMAT", show_envvar=False,
              help="text, or json: one JSON object per line for a log collector (or TANDEM_LOG_FORMAT)")] = "text",
          ) -> None:
    if log_format not in LOG_FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(LOG_FORMATS)}", param_hint="--log-format")
    configure_logging(logging.INFO, "json" if log_format == "json" else "text")
    _overrides.clear()
    if state_dir is not None:
        _overrides["state_dir"] = state_dir


def _settings(*, serving: bool, creates: bool = False) -> Settings:
    """Settings from the environment (and ``--state-dir``).

    Commands that do not serve HTTP never use the bootstrap token, so for them a missing one is
    replaced by a random throwaway value instead of refusing to start. Only ``serving`` and
    ``creates`` commands may create state; any other refuses a state directory without a database and key.
    """
    try:
        if serving or os.environ.get("TANDEM_COORD_BOOTSTRAP_TOKEN"):
            settings = Settings(**_overrides)
        else:
            settings = Settings(bootstrap_token=SecretStr(secrets.token_urlsafe(32)), **_overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = f"TANDEM_COORD_{str(err['loc'][0]).upper()}: " if err["loc"] else ""
        typer.echo(f"error: {where}{str(err['msg']).removeprefix('Value error, ')}", err=True)
        raise typer.Exit(2) from None
    if not (serving or creates):
        _require_state(settings)
    return settings


def _require_state(settings: Settings) -> None:
    """Exit 2 if the database file or the audit key is missing: this command must not create them."""
    missing = [str(p) for p in (settings.sqlite_path, settings.signing_key_path) if p is not None and not p.exists()]
    if missing:
        typer.echo(f"error: no coordinator state in {settings.state_dir.resolve()} ({', '.join(missing)} missing); "
                   "this command creates nothing. Fix: pass --state-dir DIR (or set TANDEM_COORD_STATE_DIR) to the "
                   "directory the coordinator serves from, or create the state with: tandem-coordinator init-db",
                   err=True)
        raise typer.Exit(2)


KEEP_ALIVE_SECONDS = 30
"""How long ``serve`` keeps an idle HTTP connection open (uvicorn's default is 5 s)."""

WORKER_START_SECONDS = 60
"""How long uvicorn's supervisor waits for a worker of ``serve --workers N`` to answer its ping before it kills
the worker and starts another (uvicorn's default is 5 s). A new worker answers only once it has imported the
coordinator, which took 3-6 s on a loaded 2-core machine: with 5 s, healthy workers were killed while
starting, and their replacements could be killed the same way. Once started, a worker answers from a thread
of its own, so only a frozen process waits this long to be replaced (and while the supervisor waits for it,
``serve`` handles no signal: a stop then waits up to this long)."""

WORKER_POLICY = "TANDEM_COORD_WORKER_POLICY"
"""Environment variable through which ``serve`` hands its workers the policy text it loaded and recorded."""

IDLE_POLLS = ("/api/v1/nodes/jobs", "/api/v1/parties", "/api/v1/healthz")
"""What nodes and monitors poll every few seconds: their successful GETs are not access-logged."""


class QuietPolls(logging.Filter):
    """Drop uvicorn access lines of successful idle polls (``IDLE_POLLS``); every write and error stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 5:
            _, method, path, _, status = args
            if method == "GET" and isinstance(status, int) and status < 400 and str(path).startswith(IDLE_POLLS):
                return False
        return True


def _state_line(settings: Settings) -> str:
    database = settings.database_url.split("@")[-1]
    return f"state: database {database}, audit key {settings.signing_key_path.resolve()}"


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind (or TANDEM_COORD_HOST)", envvar="TANDEM_COORD_HOST",
                                      show_envvar=False)] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        help="TCP port (or TANDEM_COORD_PORT); nodes default to http://127.0.0.1:8600", envvar="TANDEM_COORD_PORT",
        show_envvar=False)] = 8600,
    workers: Annotated[int | None, typer.Option(
        help="API worker processes on this port and database (or TANDEM_COORD_WORKERS; default 1): more use "
             "more cores", show_default=False)] = None,
) -> None:
    """Run the coordinator API with uvicorn (creates the state directory, database and audit key if missing).

    With several workers, this process checks the state, records the start in the audit log and runs the
    training launcher; uvicorn starts the workers (``worker_app``), restarts one that dies, and stops them all
    on SIGTERM or Ctrl-C.
    """
    import uvicorn

    from coordinator.flower.launcher import TrainingLauncher, TrainingSettings
    from coordinator.tls import check_training_files

    if workers is not None:
        _overrides["workers"] = workers
    settings = _settings(serving=True)
    tls = _tls_options(settings, host)  # before create_app: a refused start leaves no state behind
    training = TrainingSettings()
    if training.enabled:
        check_training_files(training.tls_ca, training.tls_cert, training.tls_key)
    if settings.workers == 1:
        api: Any = create_app(settings)
        ctx = api.state.context
    else:
        policy_text = read_policy_text(settings.policy_path)
        # the tail check and policy.loaded, once, before any worker starts
        ctx = build_context(settings, policy=parse_policy(policy_text))
        api = f"{__name__}:worker_app"
        os.environ.update({"TANDEM_COORD_STATE_DIR": str(settings.state_dir),  # --state-dir and --workers
                           "TANDEM_COORD_WORKERS": str(settings.workers),  # reach the workers' Settings()
                           WORKER_POLICY: policy_text})
    typer.echo(_state_line(settings), err=True)
    typer.echo(f"serving {'https' if tls else 'http'}://{host}:{port}" + (" (TLS 1.3)" if tls else "")
               + (f" with {settings.workers} workers" if settings.workers > 1 else ""), err=True)
    logging.getLogger("uvicorn.access").addFilter(QuietPolls())
    launcher = TrainingLauncher(ctx, training) if training.enabled else None
    if launcher is not None:
        launcher.start()
    _freeze_startup_objects()
    try:
        # keep-alive longer than clients' (httpx: 5 s): with equal timeouts the server closes an idle
        # connection just as a client reuses it, and that request fails with a read error
        uvicorn.run(api, host=host, port=port, log_config=None, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                    **_worker_options(settings.workers), **tls)
    finally:
        if launcher is not None:
            launcher.stop()


def _worker_options(workers: int) -> dict[str, Any]:
    """The uvicorn options that run ``workers`` processes of ``worker_app`` (none for one process)."""
    if workers == 1:
        return {}
    return {"factory": True, "workers": workers, "timeout_worker_healthcheck": WORKER_START_SECONDS}


def worker_app() -> Any:
    """The app of one worker process of ``serve --workers N`` (uvicorn's factory, in a fresh process).

    Its settings come from the environment ``serve`` was started with (plus ``--state-dir`` and
    ``--workers``, which ``serve`` exported), with the failed-authentication limit shared out
    (``Settings.per_worker``). It checks and records nothing at start: ``serve`` did, before any worker.
    It enforces the policy ``serve`` loaded and recorded (``WORKER_POLICY``), not the policy file as it is
    now: a worker uvicorn starts again later (after a crash, or on SIGHUP) would otherwise enforce a file
    edited since, which no ``policy.loaded`` event names, or fail to start again and again on a broken one.
    """
    _end_with_parent()
    log_format = os.environ.get("TANDEM_LOG_FORMAT", "text")
    configure_logging(logging.INFO, "json" if log_format == "json" else "text")
    logging.getLogger("uvicorn.access").addFilter(QuietPolls())
    api = create_app(Settings().per_worker(), worker=True, policy=parse_policy(os.environ[WORKER_POLICY]))
    _freeze_startup_objects()
    return api


def _end_with_parent() -> None:
    """Linux: have the kernel send this worker SIGTERM when ``serve`` dies, even by SIGKILL.

    Otherwise a worker outlives a killed ``serve`` and keeps its port, and the restarted coordinator cannot
    bind it (inside a container the whole container stops instead, but not under systemd or a shell).
    """
    import ctypes
    import multiprocessing
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: no such call
        return
    parent = multiprocessing.parent_process()  # serve, which spawned this worker
    ppid = os.getppid()
    # serve died before the call: this worker now belongs to init, or to a subreaper (systemd's user manager,
    # tini -s) whose pid is not 1; nobody will send the signal
    if ppid == 1 or (parent is not None and ppid != parent.pid):
        os.kill(os.getpid(), signal.SIGTERM)


def _freeze_startup_objects() -> None:
    """Move what start-up built out of the cyclic collector's sight.

    What was built so far (imports, the app, its routes and models) lives as long as the process: out of
    the collector's sight, a full collection walks only what requests made: about 71 ms per full collection
    before, about 5 ms after (bench/api_bench.py on SQLite, 15 s; those pauses were the p99 of job
    submission: 111.6 -> 50.4 ms).
    """
    gc.collect()
    gc.freeze()


def _tls_options(settings: Settings, host: str) -> dict[str, Any]:
    """The uvicorn TLS options for ``settings`` (TLS 1.3 minimum), after the start-up checks.

    Raises:
        ConfigError: plain HTTP off loopback without a declared proxy, or unusable certificate files.
    """
    from coordinator import tls

    tls.check_exposure(host, tls=settings.tls_cert is not None, insecure_http=settings.insecure_http)
    if settings.tls_cert is None or settings.tls_key is None:
        return {}
    cert, key = settings.tls_cert, settings.tls_key
    tls.check_server_files(cert, key)
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key),
            "ssl_context_factory": lambda _config, _default: tls.server_context(cert, key)}


@app.command("init-db")
def init_db() -> None:
    """Create the state: database tables (on PostgreSQL, the append-only audit trigger) and the audit key."""
    from coordinator.keys import load_or_create_signing_key

    settings = _settings(serving=False, creates=True)
    settings.check_state_dirs()
    SqlStore.from_url(settings.database_url).close()
    load_or_create_signing_key(settings.signing_key_path)
    typer.echo(f"database ready: {settings.database_url.split('@')[-1]}")
    typer.echo(_state_line(settings))


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Option(help="user name (lowercase, digits, _ or -)")],
    role: Annotated[Role, typer.Option(help="admin, analyst, operator or auditor")],
    party: Annotated[str | None, typer.Option(help="party of an admin/analyst/operator")] = None,
    signing_key: Annotated[str | None, typer.Option(help="auditor's Ed25519 public key (64 hex)")] = None,
    expires_in_days: Annotated[int, typer.Option(help="days until the API token expires (1-3650)")] = 90,
) -> None:
    """Create a user directly in the database and print its API token (shown once)."""
    settings = _settings(serving=False)
    try:
        body = UserCreate(name=name, role=role, party=party, signing_key=signing_key,
                          expires_in_days=expires_in_days)
        ctx = build_context(settings, announce=False)
        created = accounts.create_user(ctx, "cli", body)
    except ValidationError as exc:
        err = exc.errors()[0]
        typer.echo(f"error: --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    except CoordinatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(_state_line(settings), err=True)
    logger.info("user %s created with role %s", created.name, created.role)
    typer.echo(created.token)


@user_app.command("revoke")
def user_revoke(name: Annotated[str, typer.Argument(help="the user whose API token to end")]) -> None:
    """End a user's API token now (audited as user.revoked); create a new user to give access again."""
    settings = _settings(serving=False)
    try:
        ctx = build_context(settings, announce=False)
        user = accounts.revoke_user(ctx, "cli", name)
    except CoordinatorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(_state_line(settings), err=True)
    logger.info("user %s revoked", user.name)
    typer.echo(f"revoked: user {user.name}'s API token no longer works (expired at {user.expires_at}; a running "
               "coordinator on this database refuses it within 2 s)")


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


@audit_app.command("cross-check")
def audit_cross_check(
    audit: Annotated[Path, typer.Option(help="the coordinator's audit export (`audit export --out`)")],
    ledger: Annotated[list[str], typer.Option(
        help="a node's ledger export (`tandem-bank ledger export --out`), as FILE or PARTY=FILE; once per node")],
    key: Annotated[str | None, typer.Option(help="coordinator's public key (64 hex): also check the signed head")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as one JSON object")] = False,
) -> None:
    """Check that every message each node sent belongs to a job the coordinator and the other party know.

    Exit 0 when every message is accounted for, 1 when something is flagged, 2 when an input is refused
    (not an export, a broken audit chain, a ledger of another node than its label says).
    """
    from coordinator import crosscheck

    try:
        inputs = []
        for value in ledger:
            party, path = crosscheck.parse_ledger_label(value)
            inputs.append(crosscheck.LedgerInput(path, _read_lines(Path(path), "--ledger"), party))
        result = crosscheck.cross_check(inputs, _read_lines(audit, "--audit"), key)
    except crosscheck.CrossCheckRefused as exc:
        typer.echo(f"refused: {exc.field}: {exc.message}; fix: {exc.fix}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.to_dict(), indent=1) if as_json else crosscheck.format_text(result))
    raise typer.Exit(0 if result.ok else 1)


def _read_lines(path: Path, option: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"error: {option} {path}: cannot read it ({type(exc).__name__}); give the exported file", err=True)
        raise typer.Exit(2) from None


@report_app.callback()
def report(
    context: typer.Context,
    job: Annotated[int | None, typer.Option("--job", help="the job to report on")] = None,
    start: Annotated[str | None, typer.Option("--from", help="first day of the period (YYYY-MM-DD)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="last day of the period, included (YYYY-MM-DD)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="file to write: FILE.pdf or FILE.html")] = None,
) -> None:
    """Write the compliance report of one job (--job N) or a period (--from DATE --to DATE) to --out.

    The report names the audit head it was produced against and carries the coordinator's signature;
    producing it is audited (report.produced). Check it later with: tandem-coordinator report verify.
    """
    if context.invoked_subcommand is not None:
        return
    from coordinator import reports

    if out is None or out.suffix.lower() not in (".pdf", ".html") or (job is None) == (start is None and end is None) \
            or (job is None and (start is None or end is None)):
        typer.echo("error: give --job N, or --from DATE and --to DATE, and --out FILE.pdf or FILE.html", err=True)
        raise typer.Exit(2)
    ctx = build_context(_settings(serving=False), announce=False)
    cli_auditor = accounts.Principal("cli", Role.AUDITOR)
    try:
        signed = (reports.job_report(ctx, cli_auditor, job, audit_actor="cli") if job is not None else
                  reports.period_report(ctx, cli_auditor, start or "", end or "", audit_actor="cli"))
    except CoordinatorError as exc:
        typer.echo(f"error: {exc.message}" + (f" ({exc.fix})" if exc.fix else ""), err=True)
        raise typer.Exit(2) from None
    _write_report(signed, out)
    typer.echo(f"wrote {out} ({len(signed.report.jobs)} jobs, audit head seq {signed.report.head.seq}, digest "
               f"{signed.digest}); verify with: tandem-coordinator audit export --out audit.jsonl && "
               f"tandem-coordinator report verify {out} --audit audit.jsonl --key {ctx.audit_key.public_hex}")


def _write_report(signed: Any, out: Path) -> None:
    from coordinator.api.report_html import render_html
    from coordinator.report_pdf import render_pdf

    if out.suffix.lower() == ".pdf":
        out.write_bytes(render_pdf(signed))
    else:
        out.write_text(render_html(signed), encoding="utf-8")


@report_app.command("verify")
def report_verify(
    file: Annotated[Path, typer.Argument(help="the report (PDF or HTML) to check")],
    audit: Annotated[Path, typer.Option("--audit", help="an audit export (JSON Lines) taken after the report")],
    key: Annotated[str, typer.Option(help="coordinator's Ed25519 public key, 64 hex (obtained out of band)")],
) -> None:
    """Check a report against an audit export and the coordinator key; exit 0 if it holds, 1 if not, 2 on errors."""
    from coordinator import report_proof

    key = key.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        typer.echo("error: --key must be 64 hex characters (the coordinator's Ed25519 public key)", err=True)
        raise typer.Exit(2)
    try:
        proof = report_proof.read_proof(file.read_bytes())
        with audit.open("rb") as fh:
            lines = list(audit_chain._bounded_lines(fh))
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    check = report_proof.verify_report(proof, lines, key)
    for line in check.lines:
        typer.echo(line)
    raise typer.Exit(0 if check.ok else 1)


@certs_app.command("init")
def certs_init(directory: Annotated[Path, typer.Option("--dir", help="the CA directory (created, mode 0700)")]) -> None:
    """Create a private CA (ca.crt, ca.key mode 0600) once; run again, it changes nothing and says so."""
    from coordinator import certs

    files = certs.init_ca(directory)
    if not files.created:
        typer.echo(f"CA already in {directory}; nothing changed ({files.cert})")
        return
    typer.echo(f"CA created: {files.cert} (give it to nodes as <PREFIX>COORDINATOR_CA and "
               f"<PREFIX>TRAINING_SUPERLINK_CA) and {files.key} (mode 0600; keep it off the serving host)")


@certs_app.command("issue")
def certs_issue(
    directory: Annotated[Path, typer.Option("--dir", help="the CA directory (certs init --dir)")],
    name: Annotated[list[str], typer.Option("--name", help="DNS name or IP nodes dial; repeat for more")],
    out: Annotated[Path, typer.Option("--out", help="path prefix: writes PREFIX.crt and PREFIX.key (0600)")],
    days: Annotated[int, typer.Option(min=1, max=3650, help="validity in days (capped at the CA's)")] = 397,
    force: Annotated[bool, typer.Option("--force", help="replace existing files (rotation)")] = False,
) -> None:
    """Issue a server certificate and key signed by the CA, for the coordinator's HTTPS or the SuperLink.

    Coordinator: TANDEM_COORD_TLS_CERT=PREFIX.crt TANDEM_COORD_TLS_KEY=PREFIX.key. SuperLink:
    TANDEM_COORD_TRAINING_TLS_CA=DIR/ca.crt, TANDEM_COORD_TRAINING_TLS_CERT=PREFIX.crt, _TLS_KEY=PREFIX.key.
    """
    from coordinator import certs

    files = certs.issue(directory, name, out, days=days, force=force)
    typer.echo(f"issued {files.cert} and {files.key} (mode 0600) for {', '.join(name)}, signed by {files.ca}")


@app.command("public-key")
def public_key() -> None:
    """Print the coordinator's Ed25519 audit public key (hex); refuses a state directory without one."""
    from coordinator.keys import load_or_create_signing_key

    typer.echo(load_or_create_signing_key(_settings(serving=False).signing_key_path).public_hex)


for _info in [*app.registered_commands, *user_app.registered_commands, *audit_app.registered_commands,
              *report_app.registered_commands]:
    if _info.name not in ("verify", "cross-check"):  # these read their files (and key) only
        _info.epilog = _info.epilog or EPILOG


def main() -> None:
    """Console entry point: configure logging once, then run the command (a state problem exits 2, no traceback)."""
    configure_logging(logging.INFO)
    try:
        app()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
