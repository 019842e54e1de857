"""Node settings: one ``NodeSettings`` for both nodes; ``bank_node``/``telco_node`` only set a prefix and defaults."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocols.wire.control import PartyKind

__all__ = ["LOOPBACK_HOSTS", "NodeSettings", "PartyName"]

PartyName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,62}$")]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_PLACEHOLDER_TOKENS = frozenset({"", "changeme", "change-me", "token", "secret"})


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NodeSettings(BaseSettings):
    """Everything a node needs to run. Subclasses set ``env_prefix`` (``TANDEM_BANK_``, ``TANDEM_TELCO_``)."""

    model_config = SettingsConfigDict(env_prefix="TANDEM_NODE_", env_file=".env", extra="ignore")

    party: PartyName
    kind: PartyKind
    coordinator_url: str = "http://127.0.0.1:8000"
    api_token: SecretStr = Field(description="bearer token of this party's admin at the coordinator")
    state_dir: Path | None = Field(default=None, description="keys, certificate and node.db; default .tandem/<party>")
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=8443, ge=1, le=65535)
    node_url: str | None = Field(default=None, description="public https URL of this node; default https://localhost:<port>")
    tls_hostnames: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"],
        description="names and IPs written into the certificate's SAN (node_url's host is added)",
    )
    coordinator_ca: Path | None = Field(
        default=None, description="CA bundle to verify an https coordinator; None uses the system store"
    )
    poll_interval: float = Field(default=2.0, gt=0.0, le=3600.0)
    chunk_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_message_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    scoring_api_key: SecretStr | None = Field(
        default=None, description="bearer key of the bank's local real-time scoring API; None disables the API"
    )
    scoring_host: str = Field(default="127.0.0.1", description="real-time scoring API address (loopback by default)")
    scoring_port: int = Field(default=8600, ge=0, le=65535)
    egress_capture_dir: Path | None = Field(
        default=None, description="keep a copy of every payload this node sends here (review and tests); off by default"
    )

    @model_validator(mode="after")
    def _fill_and_check(self) -> Self:
        if self.state_dir is None:
            self.state_dir = Path(".tandem") / self.party
        if self.node_url is None:
            self.node_url = f"https://localhost:{self.listen_port}"
        if not self.node_url.startswith("https://"):
            raise ValueError("node_url must start with https:// (the data plane is mutual TLS only)")
        parts = urlsplit(self.coordinator_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("coordinator_url must be an http(s) URL")
        if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
            raise ValueError("plain http to the coordinator is allowed on loopback only; use https://")
        if self.api_token.get_secret_value().strip().lower() in _PLACEHOLDER_TOKENS:
            raise ValueError("api_token is empty or a placeholder; set the token the coordinator issued")
        key = self.scoring_api_key
        if key is not None and (len(key.get_secret_value()) < 16
                                or key.get_secret_value().strip().lower() in _PLACEHOLDER_TOKENS):
            raise ValueError("scoring_api_key must be at least 16 characters and not a placeholder")
        return self

    @property
    def state_path(self) -> Path:
        """The state directory (always set after validation)."""
        assert self.state_dir is not None
        return self.state_dir

    @property
    def public_url(self) -> str:
        """The node's public https URL (always set after validation)."""
        assert self.node_url is not None
        return self.node_url.rstrip("/")

    def certificate_names(self) -> list[str]:
        """SAN entries for the TLS certificate: ``tls_hostnames`` plus the host of ``node_url``."""
        names = list(self.tls_hostnames)
        host = urlsplit(self.public_url).hostname
        if host and host not in names:
            names.append(host)
        return names

    def coordinator_verify(self) -> bool | str:
        """The ``verify`` argument for httpx when talking to the coordinator."""
        return str(self.coordinator_ca) if self.coordinator_ca else True
