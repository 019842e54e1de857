"""PSI commands added to the node CLI: ``psi-local``, ``psi-results``, ``outbox``, ``psi-rotate-epoch``.

``psi-local`` runs a PSI job on two local files with both roles in one process (see
:mod:`node.jobs.psi.local`); it needs no coordinator and no keys. ``psi-results JOB`` lists the
row-level results a job kept on this node, desensitised to the clearance the coordinator states for
the node's token (``--export FILE.csv|.jsonl`` writes them all, audited first; ``--full --reason`` unmasked,
if the policy grants it). ``outbox`` lists relay messages queued on
this node, numbers masked. ``psi-rotate-epoch`` starts a new key epoch for labeled-PSI tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from node.coordinator_client import CoordinatorError
from node.node_db import NODE_DB
from node.runtime import NodeRuntime
from node.settings import NodeSettings
from protocols.wire.control import JobParams
from protocols.wire.desensitise import ExportRecord
from protocols.wire.errors import ConfigError, ProtocolError
from psi.engine import ProcessPoolMapper

from ._rows import KeyColumn, infer_key_type, party_rows
from .local import LocalMode, run_local_job
from .outreach import OutboxChannel, mask_msisdn
from .results import export_results, list_results, read_results
from .tables import TableStore

__all__ = ["add_psi_commands"]


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=True)


def _local(bank: Path, telco: Path, mode: LocalMode, keys: list[str], filter_text: str | None,
           consent: str | None, label: str, id_field: str, params: JobParams, workers: int, show: int) -> None:
    key_columns = [KeyColumn(k, infer_key_type(k)) for k in keys]
    recovery = mode in ("recovery", "relay")
    bank_rows = party_rows(_read(bank), key_columns, id_field=id_field, consent_field=consent if recovery else None)
    telco_rows = party_rows(_read(telco), key_columns, label_field=label if recovery else None,
                            filter_text=filter_text)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="psi-local-") as state:
        if workers > 1:
            with ProcessPoolMapper(workers) as mapper:
                result = run_local_job(bank_rows, telco_rows, mode, params, state_dir=Path(state), mapper=mapper)
        else:
            result = run_local_job(bank_rows, telco_rows, mode, params, state_dir=Path(state))
    typer.echo(json.dumps({"bank": result.bank, "telco": result.telco,
                           "seconds": round(time.perf_counter() - start, 3)}, indent=2, default=str))
    for row in result.rows[:show]:
        typer.echo("  " + "  ".join(mask_msisdn(v) if i == 2 else v for i, v in enumerate(row)))
    if len(result.rows) > show:
        typer.echo(f"  … {len(result.rows) - show} more rows (shown: {show}; numbers masked)")


def _export_format(path: Path) -> Literal["csv", "jsonl"]:
    if path.suffix not in (".csv", ".jsonl"):
        raise ConfigError(f"--export {path}: unknown format (fix: name a .csv or .jsonl file)")
    return "csv" if path.suffix == ".csv" else "jsonl"


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def _results(settings: NodeSettings, job_id: int, limit: int, export: Path | None, full: bool, reason: str) -> None:
    """``psi-results``: the coordinator states this token's clearance; an export is audited before it is written."""
    if full and export is None:
        raise ConfigError("--full applies to an export (fix: add --export FILE.csv or FILE.jsonl)")
    if full and not reason.strip():
        raise ConfigError("--full needs --reason (fix: say why, e.g. --reason 'call-back list, ticket 1234')")
    fmt = _export_format(export) if export is not None else None
    if export is not None and export.exists():
        raise ConfigError(f"--export {export} exists; an export never overwrites a file (fix: choose another path)")
    job_dir = settings.state_path / "jobs" / str(job_id)
    if not read_results(job_dir):
        typer.echo(f"job {job_id} kept no row-level results on this node")
        return
    rt = NodeRuntime.open(settings)
    try:
        seen = rt.coordinator.disclosure(job_id)
        if fmt is None:
            typer.echo(f"as {seen.role} of {seen.party} (clearance {seen.clearance}): values above it desensitised")
            typer.echo("\n".join(list_results(job_dir, rules=seen.rules(), clearance=seen.clearance, limit=limit)))
            return
        out = export_results(job_dir, fmt, rules=seen.rules(), clearance=seen.clearance, full=full)
        assert export is not None  # noqa: S101 - fmt is set only with export
        # the coordinator decides (policy clearance.full_export) and audits who, what, why; a refusal writes nothing
        receipt = rt.coordinator.record_export(job_id, ExportRecord(
            file=str(export.resolve()), rows=out.rows, columns=out.columns, full=full, reason=reason,
            sha256=hashlib.sha256(out.content).hexdigest()))
    finally:
        rt.close()
    _write_private(export, out.content)
    kind = "unmasked" if full else f"desensitised to clearance {seen.clearance}"
    typer.echo(f"exported {out.rows} rows ({kind}) to {export}; audit event {receipt.audit_seq}")


def _drain(box: OutboxChannel, job_id: int | None, state_dir: Path) -> None:
    """``outbox --drain``: send a relay job's queued messages; a failure is one line naming the fix, exit 2."""
    try:
        if job_id is None:
            raise ConfigError("--drain needs --job N (the relay job whose queued messages to send)")
        typer.echo(json.dumps(box.drain(str(job_id), state_dir=state_dir).outputs(), ensure_ascii=False))
    except ProtocolError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def add_psi_commands(app: typer.Typer, settings_cls: type[NodeSettings]) -> None:
    """Add the PSI commands to a node's CLI (``build_cli(..., extensions=[add_psi_commands])``)."""

    @app.command("psi-local")
    def psi_local(
        bank: Annotated[Path, typer.Option("--bank", exists=True, help="bank CSV/Parquet (receiver)")],
        telco: Annotated[Path, typer.Option("--telco", exists=True, help="telco CSV/Parquet (sender)")],
        mode: Annotated[str, typer.Option("--mode", help="count | ids | recovery | relay")] = "count",
        key: Annotated[list[str] | None, typer.Option("--key", help="key column (repeat, priority order)")] = None,
        filter_text: Annotated[str | None, typer.Option("--filter", help="telco filter, e.g. 'age >= 25'")] = None,
        consent: Annotated[str | None, typer.Option("--consent", help="bank consent column (recovery)")] = None,
        label: Annotated[str, typer.Option("--label", help="telco label column (recovery)")] = "msisdn",
        id_field: Annotated[str, typer.Option("--id", help="bank record id column")] = "customer_id",
        min_cell: Annotated[int, typer.Option("--min-cell", min=1)] = 50,
        epsilon: Annotated[float | None, typer.Option("--epsilon", help="DP noise on the count")] = None,
        match_cap: Annotated[int, typer.Option("--match-cap", min=1)] = 10_000,
        template: Annotated[str, typer.Option("--template", help="relay message")] = "Please contact your bank.",
        workers: Annotated[int, typer.Option("--workers", min=1, help="processes for the group work")] = 1,
        show: Annotated[int, typer.Option("--show", min=0, help="result rows to print (masked)")] = 5,
    ) -> None:
        """Run a PSI job on two local files, both roles in one process (same drivers and messages)."""
        if mode not in ("count", "ids", "recovery", "relay"):
            raise typer.BadParameter("--mode must be count, ids, recovery or relay")
        keys = key or ["id_number"]
        params = JobParams(min_cell=min_cell, epsilon=epsilon, match_cap=match_cap, message_template=template)
        try:
            _local(bank, telco, mode, keys, filter_text, consent, label, id_field, params,  # type: ignore[arg-type]
                   workers, show)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    @app.command("psi-results")
    def psi_results(
        job_id: int,
        limit: Annotated[int, typer.Option("--limit", min=0, help="rows listed per file")] = 20,
        export: Annotated[Path | None, typer.Option("--export", help="write every row to FILE.csv or FILE.jsonl "
                                                    "(desensitised to this token's clearance; audited)")] = None,
        full: Annotated[bool, typer.Option("--full", help="export unmasked: needs the policy's full_export grant "
                                           "for this token's role and the job's purpose, and --reason")] = False,
        reason: Annotated[str, typer.Option("--reason", help="why the export is made (recorded in the audit log)")]
        = "",
    ) -> None:
        """List (or export) the row-level results a PSI job kept on this node, desensitised for this token."""
        settings = settings_cls()  # type: ignore[call-arg]
        try:
            _results(settings, job_id, limit, export, full, reason)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except CoordinatorError as exc:
            typer.echo(f"refused: {exc}", err=True)
            raise typer.Exit(1) from None

    @app.command("outbox")
    def outbox(job_id: Annotated[int | None, typer.Option("--job")] = None,
               limit: Annotated[int, typer.Option("--limit", min=0)] = 20,
               drain: Annotated[bool, typer.Option("--drain", help=(
                   "send --job's still-queued messages through the configured channel (TANDEM_CHANNEL_*); "
                   "the delivery journal skips anyone already messaged"))] = False) -> None:
        """List relay messages queued on this node (numbers masked); ``--drain --job N`` resumes a stopped send."""
        settings = settings_cls()  # type: ignore[call-arg]
        box = OutboxChannel(settings.state_path / NODE_DB)
        try:
            if drain:
                _drain(box, job_id, settings.state_path)
            rows = box.rows(None if job_id is None else str(job_id), limit=limit)
        finally:
            box.close()
        for row in rows:
            typer.echo(f"job {row.job_id}\t{row.recipient_masked}\t{row.status}\t{row.message}")
        if not rows:
            typer.echo("the outbox is empty")

    @app.command("psi-rotate-epoch")
    def rotate() -> None:
        """Start a new key epoch: labeled-PSI tables are rebuilt with a fresh OPRF key."""
        settings = settings_cls()  # type: ignore[call-arg]
        typer.echo(f"new key epoch {TableStore(settings.state_path / 'psi').rotate()}")
