"""The telco node's command line (``tandem-telco``): the shared node CLI over ``TelcoSettings``."""

from __future__ import annotations

from protocols.node.cli import build_cli
from telco_node.settings import TelcoSettings

__all__ = ["main"]

main = build_cli(TelcoSettings, "telco")
