"""The node command line, shared by both nodes: ``build_cli(BankSettings, "bank")`` and so on.

Commands: ``init``, ``register-dataset``, ``datasets``, ``approve``, ``retry``, ``serve``, ``run-once``,
``ledger verify``, ``ledger export``. Every failure prints one line that says what to fix and exits
with code 2 (``ledger verify`` exits 1 when the chain is broken); no tracebacks.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, ParamSpec, TypeAlias, TypeVar

import httpx
import typer
from pydantic import ValidationError
from tqdm import tqdm

from node.adapters import open_source, redact_uri
from node.approval import job_terms_of, recompute_digest, sign_approval
from node.governance import describe, load_governance
from node.runner import JobFamily, JobHandler, family_handlers
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.wire.control import JobKind, JobRetry
from protocols.wire.errors import ProtocolError

__all__ = ["NodeService", "build_cli"]

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

    def init(self) -> None:
        rt = self.runtime(create_keys=True)
        try:
            party = rt.coordinator.upsert_party(rt.party_create())
        finally:
            rt.close()
        typer.echo(f"party {party.name} ({party.kind}) registered at {party.node_url}")
        typer.echo(f"keys in {rt.settings.state_path}; TLS fingerprint {rt.keys.tls_fingerprint}")

    def register_dataset(self, source_uri: str, governance_path: Path, batch_size: int) -> None:
        governance = load_governance(governance_path)
        rt = self.runtime()
        try:
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
            typer.echo(json.dumps(job_terms_of(job), indent=2, sort_keys=True))
            typer.echo(f"digest (recomputed here): {digest}")
            if job.digest != digest:
                raise ProtocolError(f"the coordinator's digest {job.digest[:16]}… differs from the terms' digest "
                                    f"{digest[:16]}…; do not approve, report it to compliance")
            if not yes and not typer.confirm(f"Approve job {job_id} for party {rt.settings.party}?"):
                raise ProtocolError("not approved (answer yes, or pass --yes)")
            rt.coordinator.approve(job_id, sign_approval(job, rt.keys.signing, rt.settings.party))
        finally:
            rt.close()
        typer.echo(f"job {job_id} approved by party:{rt.settings.party}")

    def retry(self, job_id: int, reason: str) -> None:
        rt = self.runtime()
        try:
            job = rt.coordinator.retry(job_id, JobRetry(reason=reason))
        finally:
            rt.close()
        typer.echo(f"job {job_id} retried as attempt {job.attempt}: {job.status}"
                   + (f" ({job.status_detail})" if job.status_detail else ""))
        if job.status == "pending_approval":
            typer.echo(f"its terms changed (policy {job.policy_version}); approve it again: approve {job_id}")

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
    app = typer.Typer(help=f"Tandem {role} node (settings from {prefix}* environment variables).",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
    ledger = typer.Typer(help="The egress ledger: every message this node sent.", no_args_is_help=True)
    app.add_typer(ledger, name="ledger")
    friendly = _friendly(prefix)

    @app.callback()
    def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress to stderr")] = False) -> None:
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    @app.command("init")
    @friendly
    def init() -> None:
        """Create keys and the TLS certificate (once) and register the party with the coordinator."""
        cmd.init()

    @app.command("register-dataset")
    @friendly
    def register_dataset(
        source: Annotated[str, typer.Option("--source", help="csv:///…, parquet:///… or sql+<url>#table=…")],
        governance: Annotated[Path, typer.Option("--governance", help="governance YAML file")],
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 65_536,
    ) -> None:
        """Describe a dataset (schema and coarse stats, never rows) and register it in the catalog."""
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

    @app.command("retry")
    @friendly
    def retry(
        job_id: int,
        reason: Annotated[str, typer.Option("--reason", help="why (audited), e.g. the fixed cause")] = "",
    ) -> None:
        """Run a failed job again (a training job resumes from its checkpoints); needs this node's admin token."""
        cmd.retry(job_id, reason)

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
    return app
