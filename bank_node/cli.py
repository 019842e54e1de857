"""The bank node's command line (``tandem-bank``): the shared node CLI over ``BankSettings``.

The bank is the PSI receiver of ``audience_overlap`` and ``recovery`` (``protocols.psi_jobs``).
"""

from __future__ import annotations

from bank_node.settings import BankSettings
from protocols.node.cli import build_cli
from protocols.psi_jobs import receiver_handlers
from protocols.psi_jobs.cli import add_psi_commands

__all__ = ["main"]

main = build_cli(BankSettings, "bank", handlers=receiver_handlers(), extensions=[add_psi_commands])
