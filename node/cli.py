"""The node command line, shared by both nodes: ``build_cli(BankSettings, "bank")`` and so on.

Commands: ``init``, ``register-dataset`` (``--scaffold`` writes a governance file to review), ``datasets``,
``approve``, ``serve``, ``run-once``, ``status``, ``config show``, ``ledger verify``, ``ledger export``, and the ``job``
group (``node.job_cli``: submit, list, show, results, cancel, retry). Every command's ``--help`` lists the
settings it reads (``settings_help``). Every failure prints one line that says what to fix and exits with
code 2 (``ledger verify`` exits 1 when the chain is broken); no tracebacks.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, ParamSpec, TypeAlias, TypeVar

import httpx
import typer
from pydantic import BaseModel, SecretStr, ValidationError
from tqdm import tqdm

from node.adapters import open_source, redact_uri
from node.approval import recompute_digest, sign_approval
from node.coordinator_client import CoordinatorClient
from node.governance import describe, load_governance
from node.governance_scaffold import scaffold_governance
from node.job_cli import add_job_commands, describe_job
from node.keys import tls_fingerprint
from node.runner import JobFamily, JobHandler, family_handlers
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.wire.control import DatasetPublic, JobKind
from protocols.wire.errors import ConfigError, ProtocolError
from protocols.wire.logs import LOG_FORMATS, configure_logging

__all__ = ["NodeService", "build_cli", "settings_help", "settings_rows"]

NodeService: TypeAlias = Callable[[NodeRuntime], contextlib.AbstractContextManager[object]]
"""A long-running part of ``serve`` beside the job runner (e.g. real-time scoring): entered with the
runtime before the server starts, exited when it stops."""

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _settings_error(exc: ValidationError, prefix: str) -> str:
    err = exc.errors()[0]
    loc = "".join(str(p) for p in err["loc"][:1])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if loc:
        return f"setting {prefix}{loc.upper()}: {msg} (set it in the environment or .env)"
    return f"settings: {msg}"


def _default(settings_cls: type[NodeSettings], name: str) -> str:
    info = settings_cls.model_fields[name]
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    return json.dumps(value) if isinstance(value, list) else str(value)


def settings_rows(settings_cls: type[NodeSettings]) -> list[tuple[str, str, str]]:
    """Each setting as (environment variable, default, meaning), in declaration order."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    shared = NodeSettings.model_fields
    return [(prefix + name.upper(), _default(settings_cls, name),
             info.description or (shared[name].description if name in shared else "") or "")
            for name, info in settings_cls.model_fields.items()]


def family_settings_rows(settings_cls: type[NodeSettings]) -> list[tuple[str, str, str]]:
    """The job families' own settings as (environment variable, default, meaning).

    That is training's ``<prefix>TRAINING_*``, scoring's ``TANDEM_SCORING_*`` limits and the outreach
    channels' ``TANDEM_CHANNEL_*``.
    """
    from node.channels import ENV_PREFIX as CHANNEL_PREFIX
    from node.channels import ChannelSettings
    from node.jobs.scoring._limits import ENV_PREFIX as SCORING_PREFIX
    from node.jobs.scoring._limits import ScoringLimits
    from node.jobs.training.service import TrainingNodeSettings

    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    rows = []
    families: list[tuple[str, type[BaseModel]]] = [(f"{prefix}TRAINING_", TrainingNodeSettings),
                                                   (SCORING_PREFIX, ScoringLimits), (CHANNEL_PREFIX, ChannelSettings)]
    for env, model in families:
        for name, info in model.model_fields.items():
            default = info.get_default(call_default_factory=True)
            rows.append((env + name.upper(), "unset" if default is None else str(default), info.description or ""))
    return rows


def settings_help(settings_cls: type[NodeSettings]) -> str:
    """The settings block of every command's ``--help`` (lists separated by commas; also read from ``.env``)."""
    rows = [*settings_rows(settings_cls), *family_settings_rows(settings_cls)]
    lines = [f"{var} (default {default}): {meaning}" for var, default, meaning in rows]
    return "Settings (environment or .env; lists as JSON):\n\n" + "\n\n".join(lines)


def _masked(value: object) -> str:
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else ""
    return json.dumps(value) if isinstance(value, list) else str(value)


def _friendly(prefix: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Turn expected failures into one line on stderr and exit code 2."""

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def inner(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return fn(*args, **kwargs)
            except ValidationError as exc:
                message = _settings_error(exc, prefix)
            except ProtocolError as exc:
                message = str(exc)
            except OSError as exc:
                message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2)

        return inner

    return wrap


class _Commands:
    """The command implementations, bound to one node's settings class."""

    def __init__(self, settings_cls: type[NodeSettings], handlers: Mapping[JobKind, JobHandler],
                 transport: httpx.BaseTransport | None, services: Sequence[NodeService] = ()) -> None:
        self.settings_cls, self.handlers, self.transport = settings_cls, handlers, transport
        self.services = services

    def runtime(self, *, create_keys: bool = False) -> NodeRuntime:
        settings = self.settings_cls()  # type: ignore[call-arg]
        return NodeRuntime.open(settings, create_keys=create_keys, transport=self.transport)

    def check_coordinator(self, settings: NodeSettings, own_fingerprint: str | None = None) -> None:
        """The start-up checks of ``CoordinatorClient.preflight`` (nothing created or sent to the ledger)."""
        prefix = str(self.settings_cls.model_config.get("env_prefix", ""))
        with CoordinatorClient(settings.coordinator_url, settings.api_token, None, verify=settings.coordinator_verify(),
                               transport=self.transport, settings_prefix=prefix) as probe:
            probe.preflight(settings.party, max_clock_skew=settings.max_clock_skew,
                            expected_key=settings.coordinator_key, own_fingerprint=own_fingerprint)

    def init(self) -> None:
        self.check_coordinator(self.settings_cls())  # type: ignore[call-arg]  # before any key or file is created
        rt = self.runtime(create_keys=True)
        try:
            party = rt.coordinator.upsert_party(rt.party_create())
        finally:
            rt.close()
        typer.echo(f"party {party.name} ({party.kind}) registered at {party.node_url}")
        typer.echo(f"keys in {rt.settings.state_path}; TLS fingerprint {rt.keys.tls_fingerprint}")

    def scaffold(self, source_uri: str, governance_path: Path) -> None:
        if governance_path.exists():
            raise ConfigError(f"{governance_path} exists; scaffold writes a new file only (fix: choose another "
                              "--governance path or remove the file)")
        with open_source(source_uri) as source:
            text = scaffold_governance(source)
        governance_path.write_text(text, encoding="utf-8")
        todos = text.count("TODO")
        typer.echo(f"wrote {governance_path}: {text.count('# inferred')} columns with inferred types, categories "
                   f"and levels to review; replace its {todos} TODO markers, then register-dataset without --scaffold")

    def register_dataset(self, source_uri: str, governance_path: Path, batch_size: int) -> None:
        _refuse_todo(governance_path)
        governance = load_governance(governance_path)
        rt = self.runtime()
        try:
            if source_uri.startswith("spark+"):  # Spark at the node's spark_master with its spark_conf
                from node.spark import configure_from_settings

                configure_from_settings(rt.settings)
            with open_source(source_uri) as source:
                total = source.row_count()
                with tqdm(total=total, unit="rows", desc="scanning", disable=None) as bar:
                    entry = describe(source, governance, governance_path=str(governance_path),
                                     batch_size=batch_size, progress=bar.update)
            dataset = rt.coordinator.register_dataset(entry)
            rt.datasets.put(dataset.id, dataset.name, source_uri, governance_path)
        finally:
            rt.close()
        typer.echo(f"dataset {dataset.name} registered as id {dataset.id}: {dataset.row_count} rows, "
                   f"{len(dataset.fields)} fields (schema digest {dataset.schema_digest[:16]})")

    def datasets(self) -> None:
        rt = self.runtime()
        try:
            rows = rt.datasets.all()
        finally:
            rt.close()
        if not rows:
            typer.echo("no datasets registered on this node; use register-dataset")
        for d in rows:
            typer.echo(f"{d.dataset_id}\t{d.name}\t{redact_uri(d.source_uri)}\t{d.governance_path}")

    def approve(self, job_id: int, yes: bool) -> None:
        rt = self.runtime()
        try:
            job = rt.coordinator.job(job_id)
            digest = recompute_digest(job)
            datasets: dict[int, DatasetPublic] = {i.dataset_id: rt.coordinator.dataset(i.dataset_id)
                                                  for i in job.inputs}
            typer.echo("\n".join(describe_job(job, datasets)))
            typer.echo(f"digest (recomputed here from these terms): {digest}")
            if job.digest != digest:
                raise ProtocolError(f"the coordinator's digest {job.digest[:16]}… differs from the terms' digest "
                                    f"{digest[:16]}…; do not approve, report it to compliance")
            if not yes and not typer.confirm(f"Approve job {job_id} for party {rt.settings.party}?"):
                raise ProtocolError("not approved (answer yes, or pass --yes)")
            rt.coordinator.approve(job_id, sign_approval(job, rt.keys.signing, rt.settings.party))
        finally:
            rt.close()
        typer.echo(f"job {job_id} approved by party:{rt.settings.party}")

    def status(self, min_free_gb: float) -> None:
        rt = self.runtime()
        try:
            lines, problems = _status_lines(rt, min_free_gb)
        finally:
            rt.close()
        typer.echo("\n".join(lines))
        for problem in problems:
            typer.echo(f"problem: {problem}", err=True)
        if problems:
            raise typer.Exit(1)

    def config_show(self) -> None:
        settings = self.settings_cls()  # type: ignore[call-arg]
        prefix = str(self.settings_cls.model_config.get("env_prefix", ""))
        for name in self.settings_cls.model_fields:
            value = getattr(settings, name)
            typer.echo(f"# {prefix}{name.upper()} unset" if value is None
                       else f"{prefix}{name.upper()}={_masked(value)}")

    def run_once(self) -> None:
        rt = self.runtime()
        try:
            outcomes = rt.runner(self.handlers).run_once()
        finally:
            rt.close()
        if not outcomes:
            typer.echo("no approved jobs for this node")
        for o in outcomes:
            typer.echo(f"job {o.job_id}: {o.state}{': ' + o.detail if o.detail else ''}")

    def serve(self) -> None:
        rt = self.runtime()
        try:
            self.check_coordinator(rt.settings, own_fingerprint=rt.keys.tls_fingerprint)
        except BaseException:
            rt.close()
            raise
        server = rt.server()
        stop = threading.Event()
        runner = rt.runner(self.handlers)
        thread = threading.Thread(target=runner.run_forever, args=(stop,),
                                  kwargs={"on_tick": lambda: _refresh(rt)}, name="job-runner", daemon=True)
        typer.echo(f"node {rt.settings.party} serving on https://{server.host}:{server.port} (Ctrl-C to stop)")
        thread.start()
        try:
            with contextlib.ExitStack() as stack:
                for service in self.services:
                    stack.enter_context(service(rt))
                server.run()
        finally:
            stop.set()
            thread.join(timeout=30)
            rt.close()

    def ledger_verify(self) -> None:
        rt = self.runtime()
        try:
            verdict = rt.ledger.verify()
        finally:
            rt.close()
        if not verdict.ok:
            typer.echo(f"ledger BROKEN at seq {verdict.bad_seq}: {verdict.reason}", err=True)
            raise typer.Exit(1)
        typer.echo(f"ledger ok: {verdict.count} records, head {verdict.head_hash}")

    def ledger_export(self, out: Path) -> None:
        rt = self.runtime()
        try:
            count = rt.ledger.export_jsonl(out)
        finally:
            rt.close()
        typer.echo(f"exported {count} records to {out}")


def _status_lines(rt: NodeRuntime, min_free_gb: float) -> tuple[list[str], list[str]]:
    """What ``status`` prints, and the problems that make it exit 1."""
    s = rt.settings
    lines, problems = [f"node {s.party} ({s.kind}), state {s.state_path.resolve()}, data plane {s.public_url}"], []
    try:
        parties = [p for p in rt.coordinator.parties() if p.name != s.party]
        jobs = {st: len(rt.coordinator.node_jobs(st)) for st in ("pending_approval", "approved", "running")}
        lines.append(f"coordinator {s.coordinator_url}: reachable; jobs for {s.party}: "
                     + ", ".join(f"{n} {st}" for st, n in jobs.items()))
    except ProtocolError as exc:
        parties = []
        problems.append(f"coordinator {s.coordinator_url}: {exc}")
    for p in parties:
        pem = rt.pins.cert(p.name)
        state = ("pinned" if pem is not None and tls_fingerprint(pem) == p.tls_fingerprint
                 else "not pinned yet (serve pins it)" if pem is None else "PINNED CERTIFICATE DIFFERS FROM REGISTRY")
        lines.append(f"peer {p.name} at {p.node_url}: {state}")
        if state.startswith("PINNED"):
            problems.append(f"peer {p.name}: pinned certificate differs from the coordinator's registry")
    verdict = rt.ledger.verify()
    lines.append(f"egress ledger: {verdict.count} records, head {(rt.ledger.head() or '-')[:16]}"
                 + ("" if verdict.ok else f", BROKEN at seq {verdict.bad_seq}"))
    if not verdict.ok:
        problems.append(f"egress ledger broken at seq {verdict.bad_seq}: {verdict.reason}")
    free = shutil.disk_usage(s.state_path).free / 1e9
    lines.append(f"disk: {free:.1f} GB free in the state directory")
    if free < min_free_gb:
        problems.append(f"disk: {free:.1f} GB free, below --min-free-gb {min_free_gb}")
    return lines, problems


def _refuse_todo(governance_path: Path) -> None:
    """Refuse a scaffolded governance file whose TODO markers are not all replaced yet."""
    try:
        lines = governance_path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return  # load_governance names the file and the problem
    todo = [str(n) for n, line in enumerate(lines, 1) if "TODO" in line.split("#", 1)[0]]
    if todo:
        raise ConfigError(f"governance file {governance_path} still has TODO markers at line {', '.join(todo)}: "
                          "replace each with a value (review the inferred ones beside them too)")


def _refresh(rt: NodeRuntime) -> None:
    try:
        rt.refresh_pins()
    except ProtocolError as exc:
        logger.warning("cannot refresh peer pins: %s", exc)


def build_cli(
    settings_cls: type[NodeSettings],
    role: str,
    *,
    families: Sequence[JobFamily] = (),
    handlers: Mapping[JobKind, JobHandler] | None = None,
    transport: httpx.BaseTransport | None = None,
    extensions: Sequence[Callable[[typer.Typer, type[NodeSettings]], None]] = (),
    services: Sequence[NodeService] = (),
) -> typer.Typer:
    """Build the command line of a node whose settings class is ``settings_cls``.

    Args:
        settings_cls: the node's settings (its ``env_prefix`` names the environment variables).
        role: ``bank`` or ``telco``, for help texts.
        families: the job families the node runs (``JobFamily``): their handlers serve ``serve`` and ``run-once``.
        handlers: further protocol handlers per job kind (e.g. a test's stand-in).
        transport: httpx transport to the coordinator (tests inject ``httpx.MockTransport``).
        extensions: functions that add a role's extra commands (e.g. ``node.jobs.psi.cli.add_psi_commands``).
        services: long-running parts ``serve`` runs beside the job runner (see :data:`NodeService`).
    """
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    cmd = _Commands(settings_cls, {**family_handlers(families), **(handlers or {})}, transport, services)
    epilog = settings_help(settings_cls)
    app = typer.Typer(help=f"Tandem {role} node (settings from {prefix}* environment variables or .env).",
                      epilog=epilog, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    ledger = typer.Typer(help="The egress ledger: every message this node sent.", no_args_is_help=True)
    config = typer.Typer(help="The node's settings.", no_args_is_help=True)
    app.add_typer(ledger, name="ledger")
    app.add_typer(config, name="config")
    friendly = _friendly(prefix)
    add_job_commands(app, prefix, friendly, transport)

    @app.callback()
    def main(
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress to stderr")] = False,
        log_format: Annotated[str, typer.Option(
            "--log-format", envvar="TANDEM_LOG_FORMAT", show_envvar=False,
            help="text, or json: one JSON object per line for a log collector (or TANDEM_LOG_FORMAT)")] = "text",
    ) -> None:
        if log_format not in LOG_FORMATS:
            raise typer.BadParameter(f"use one of {', '.join(LOG_FORMATS)}", param_hint="--log-format")
        configure_logging(logging.INFO if verbose else logging.WARNING, "json" if log_format == "json" else "text")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request: every idle poll

    @app.command("init")
    @friendly
    def init() -> None:
        """Create keys and the TLS certificate (once) and register the party with the coordinator."""
        cmd.init()

    @app.command("register-dataset")
    @friendly
    def register_dataset(
        source: Annotated[str, typer.Option("--source", help="csv:///…, parquet:///… or sql+<url>#table=…")],
        governance: Annotated[Path, typer.Option("--governance", help=(
            "governance YAML file (schema: docs/GOVERNANCE.md, docs/governance.schema.json)"))],
        scaffold: Annotated[bool, typer.Option("--scaffold", help=(
            "write a new --governance file from the source's columns (inferred types, categories and levels, "
            "TODO markers to fill in) and register nothing"))] = False,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 65_536,
    ) -> None:
        """Describe a dataset (schema and coarse stats, never rows) and register it in the catalog."""
        if scaffold:
            cmd.scaffold(source, governance)
        else:
            cmd.register_dataset(source, governance, batch_size)

    @app.command("datasets")
    @friendly
    def datasets() -> None:
        """List datasets registered from this node and where their rows live."""
        cmd.datasets()

    @app.command("approve")
    @friendly
    def approve(
        job_id: int, yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False
    ) -> None:
        """Show a job's terms, recompute its digest, sign it with the party key and post the approval."""
        cmd.approve(job_id, yes)

    @app.command("serve")
    @friendly
    def serve() -> None:
        """Run the mutual-TLS peer server and the job runner until interrupted."""
        cmd.serve()

    @app.command("run-once")
    @friendly
    def run_once() -> None:
        """Process the approved jobs for this node once and exit."""
        cmd.run_once()

    @app.command("status")
    @friendly
    def status(min_free_gb: Annotated[float, typer.Option(
            "--min-free-gb", min=0, help="report a problem below this much free disk")] = 1.0) -> None:
        """Coordinator reachable, jobs waiting, peer pins, egress ledger, disk (exit 0 healthy, 1 a problem)."""
        cmd.status(min_free_gb)

    @config.command("show")
    @friendly
    def config_show() -> None:
        """Print every setting's effective value, .env style (secrets masked as ********)."""
        cmd.config_show()

    @ledger.command("verify")
    @friendly
    def ledger_verify() -> None:
        """Check the egress ledger's hash chain (exit 1 if broken)."""
        cmd.ledger_verify()

    @ledger.command("export")
    @friendly
    def ledger_export(out: Annotated[Path, typer.Option("--out", help="JSON-lines file to write")]) -> None:
        """Export the egress ledger as JSON lines for offline verification."""
        cmd.ledger_export(out)

    for extend in extensions:
        extend(app, settings_cls)
    for group in (app, ledger, config):  # every command lists the settings (the job group names its own)
        for info in group.registered_commands:
            info.epilog = info.epilog or epilog
    return app
