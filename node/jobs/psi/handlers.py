"""The PSI job families each node role runs (``node.runner.JobFamily``).

:class:`PsiReceiver` is the bank's (PSI receiver, labeled-PSI receiver); :class:`PsiSender` is the
telco's (PSI sender, labeled-PSI tables per key epoch in ``<state>/psi``, relay outbox in
``node.db``). A node process creates its families once: the sender's handlers share one
:class:`~node.jobs.psi._sender.SenderRegistry`, which is the inbox handler of every ``psi.*``
data-plane channel, and bind each job there to the counterparty its signed terms name
(``JobContext.peer_party``), so no other party's frame reaches the job's sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.node_db import NODE_DB
from node.runner import JobContext, JobHandler
from protocols.wire.control import JobKind
from protocols.wire.message_template import check_template

from ._sender import DEFAULT_PATIENCE, Patience, SenderRegistry
from .audience_overlap import bank_overlap, telco_overlap
from .outreach import OutboxChannel
from .recovery import bank_recovery, telco_recovery
from .tables import TableStore

__all__ = ["PsiReceiver", "PsiSender"]


class PsiReceiver:
    """The bank's PSI jobs: it is the receiver of both."""

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.AUDIENCE_OVERLAP: bank_overlap, JobKind.RECOVERY: bank_recovery}


class PsiSender:
    """The telco's PSI handlers, sharing one sender registry per node process.

    Args:
        patience: How long to wait for the receiver's first message, and through its silences.
        outbox_path: Where relay messages are queued (default: the node's ``node.db``).
    """

    def __init__(self, *, patience: Patience = DEFAULT_PATIENCE, outbox_path: Callable[[JobContext], Path] | None = None
                 ) -> None:
        self.registry = SenderRegistry()
        self.patience = patience
        self._outbox_path = outbox_path or (lambda ctx: ctx.settings.state_path / NODE_DB)

    def overlap(self, ctx: JobContext) -> dict[str, Any]:
        """``audience_overlap`` as the sender, answering the job's signed peer only."""
        with self.registry.bound(str(ctx.job.id), ctx.peer_party(), still_running=ctx.check_current):
            return telco_overlap(ctx, self.registry, patience=self.patience)

    def recovery(self, ctx: JobContext) -> dict[str, Any]:
        """``recovery`` as the labeled-PSI (reveal) or ECDH-to-sender (relay) sender, for the signed peer only."""
        relay = ctx.job.params.output_mode == "relay"
        if relay:
            check_template(ctx.job.params.message_template or "")  # refused before any PSI work
        outbox = OutboxChannel(self._outbox_path(ctx))
        try:
            with self.registry.bound(str(ctx.job.id), ctx.peer_party(), still_running=ctx.check_current):
                outputs = telco_recovery(ctx, self.registry, tables=TableStore(ctx.settings.state_path / "psi"),
                                         outreach=outbox, patience=self.patience)
            if relay:  # the PSI is closed; now the queued messages go out through the configured channel
                outputs.update(outbox.drain(str(ctx.job.id), state_dir=ctx.settings.state_path).outputs())
            return outputs
        finally:
            outbox.close()

    def handlers(self) -> dict[JobKind, JobHandler]:
        """The handler per job kind."""
        return {JobKind.AUDIENCE_OVERLAP: self.overlap, JobKind.RECOVERY: self.recovery}

