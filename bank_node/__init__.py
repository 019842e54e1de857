"""The bank's node: settings and role only; the runtime lives in ``node``."""

from bank_node.settings import BankSettings

__all__ = ["BankSettings"]
