"""The bank node's command line (``tandem-bank``): the shared node CLI over ``BankSettings``."""

from __future__ import annotations

from bank_node.settings import BankSettings
from protocols.node.cli import build_cli

__all__ = ["main"]

main = build_cli(BankSettings, "bank")
