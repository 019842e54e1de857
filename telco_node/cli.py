"""The telco node's command line (``tandem-telco``): the shared node CLI over ``TelcoSettings``.

The telco is the PSI sender of ``audience_overlap`` and ``recovery``: labeled-PSI tables per key
epoch, OPRF evaluations metered per job, relay messages through its outbox (``protocols.psi_jobs``).
"""

from __future__ import annotations

from protocols.node.cli import build_cli
from protocols.psi_jobs import sender_handlers
from protocols.psi_jobs.cli import add_psi_commands
from telco_node.settings import TelcoSettings

__all__ = ["main"]

main = build_cli(TelcoSettings, "telco", handlers=sender_handlers(), extensions=[add_psi_commands])
