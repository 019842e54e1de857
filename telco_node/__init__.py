"""The telco's node: settings and role only; the runtime lives in ``node``."""

from telco_node.settings import TelcoSettings

__all__ = ["TelcoSettings"]
