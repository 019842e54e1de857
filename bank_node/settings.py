"""The bank node's settings: the shared ``NodeSettings`` with the ``TANDEM_BANK_`` prefix and bank defaults."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from node.settings import NodeSettings, PartyName
from protocols.wire.control import PartyKind

__all__ = ["BankSettings"]


class BankSettings(NodeSettings):
    """Settings of the bank node (environment variables ``TANDEM_BANK_*``)."""

    model_config = SettingsConfigDict(env_prefix="TANDEM_BANK_", env_file=".env", extra="ignore")

    party: PartyName = "bank"
    kind: PartyKind = PartyKind.BANK
    listen_port: int = 8443
