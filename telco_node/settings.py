"""The telco node's settings: the shared ``NodeSettings`` with the ``TANDEM_TELCO_`` prefix and telco defaults."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from node.settings import NodeSettings, PartyName
from protocols.wire.control import PartyKind

__all__ = ["TelcoSettings"]


class TelcoSettings(NodeSettings):
    """Settings of the telco node (environment variables ``TANDEM_TELCO_*``)."""

    model_config = SettingsConfigDict(env_prefix="TANDEM_TELCO_", env_file=".env", extra="ignore")

    party: PartyName = "telco"
    kind: PartyKind = PartyKind.TELCO
    listen_port: int = 8444
