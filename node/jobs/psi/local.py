"""Local two-file mode: both roles of a PSI job in one process, over the same drivers and messages.

The bank's receiver driver talks to the telco's :class:`~node.jobs.psi._sender.SenderRegistry`
through :class:`~node.jobs.psi._link.LocalFrameTransport` instead of the data plane: every
message is still encoded to a frame, routed by channel, decoded, metered and answered exactly as
between two nodes. Use it to evaluate match rates and speed on two files before setting up a
federation (``tandem-bank psi-local --help``), and in benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from protocols.wire.control import JobParams, KeyType

from ._link import LocalFrameTransport, SessionLink
from ._rows import PartyRows
from ._sender import Patience, SenderRegistry
from .audience_overlap import overlap_sender_job, overlap_terms, run_overlap_receiver
from .audience_overlap import sender_outputs as overlap_sender_outputs
from .outreach import OutboxChannel
from .recovery import recovery_sender_job, recovery_terms, run_recovery_receiver
from .recovery import sender_outputs as recovery_sender_outputs
from .tables import TableStore

__all__ = ["LocalJobResult", "LocalMode", "run_local_job"]

LocalMode = Literal["count", "ids", "recovery", "relay"]


@dataclass
class LocalJobResult:
    """Both sides' outputs and the bank's row-level results."""

    bank: dict[str, Any]
    telco: dict[str, Any]
    rows: list[tuple[str, ...]]


def _link(registry: SenderRegistry, job_id: str) -> SessionLink:
    return SessionLink(LocalFrameTransport(lambda channel, frame: registry.dispatch(job_id, channel, frame)), job_id)


def run_local_job(bank: PartyRows, telco: PartyRows, mode: LocalMode, params: JobParams, *, state_dir: Path,
                  job_id: str = "local", mapper: Any = None) -> LocalJobResult:
    """Run one PSI job with both roles in this process.

    Args:
        bank: The bank's rows (keys in priority order; for recovery, consenting rows only).
        telco: The telco's rows (filtered; labels = msisdn for recovery).
        mode: ``count`` / ``ids`` (audience overlap) or ``recovery`` (reveal) / ``relay``.
        params: Job parameters (min_cell, epsilon, match_cap, message_template).
        state_dir: Where the telco keeps its key epochs and tables, and the relay outbox.
        job_id: Job id bound into the messages.
        mapper: A batch mapper (e.g. ``ProcessPoolMapper``); serial when ``None``.
    """
    extra: dict[str, Any] = {} if mapper is None else {"mapper": mapper}
    registry = SenderRegistry()
    if mode in ("count", "ids"):
        key_type = next(iter(bank.keys))
        output_mode = "count" if mode == "count" else "bank_ids"
        terms = overlap_terms(job_id, key_type, params.model_copy(update={"output_mode": output_mode}))
        job, column = overlap_sender_job(telco, terms, **extra)
        with registry.opened(job):
            bank_out, ids = run_overlap_receiver(_link(registry, job_id), bank, terms, **extra)
            summary = job.wait(Patience(0.0, 0.0))
            telco_out = overlap_sender_outputs(job, telco, column, terms, summary)
        return LocalJobResult(bank_out, telco_out, [(i,) for i in ids or []])
    priority: list[KeyType] = list(bank.keys)
    rterms = recovery_terms(job_id, priority, params.model_copy(
        update={"output_mode": "reveal" if mode == "recovery" else "relay"}))
    outbox = OutboxChannel(state_dir / "outbox.db")
    try:
        rjob, report = recovery_sender_job(telco, rterms, tables=TableStore(state_dir / "psi"), outreach=outbox,
                                           **extra)
        with registry.opened(rjob):
            bank_out, recovered = run_recovery_receiver(_link(registry, job_id), bank, rterms, **extra)
            summary = rjob.wait(Patience(0.0, 0.0))
            telco_out = recovery_sender_outputs(rjob, telco, report, rterms, summary)
    finally:
        outbox.close()
    return LocalJobResult(bank_out, telco_out, list(recovered))
