"""Node settings: one ``NodeSettings`` for both nodes; ``bank_node``/``telco_node`` only set a prefix and defaults."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocols.wire.control import PartyKind

__all__ = ["DEFAULT_COORDINATOR_URL", "LOOPBACK_HOSTS", "NodeSettings", "PartyName", "check_coordinator_url"]

PartyName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,62}$")]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_PLACEHOLDER_TOKENS = frozenset({"", "changeme", "change-me", "changethis", "token", "secret", "password"})
DEFAULT_COORDINATOR_URL = "http://127.0.0.1:8600"
"""The coordinator's default address: ``tandem-coordinator serve`` listens on 127.0.0.1:8600."""


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_coordinator_url(url: str) -> None:
    """Refuse a coordinator URL that is not http(s), or plain http off loopback (the token would travel in clear).

    Raises:
        ValueError: naming the fix.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"coordinator_url must be an http(s) URL, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise ValueError("plain http to the coordinator is allowed on loopback only; use https:// (and set "
                         "COORDINATOR_CA to the coordinator's CA file)")


class NodeSettings(BaseSettings):
    """Everything a node needs to run. Subclasses set ``env_prefix`` (``TANDEM_BANK_``, ``TANDEM_TELCO_``)."""

    model_config = SettingsConfigDict(env_prefix="TANDEM_NODE_", env_file=".env", extra="ignore")

    party: PartyName = Field(description="this node's party name at the coordinator (lowercase, digits, _ or -)")
    kind: PartyKind = Field(description="bank or telco: the node's role in the protocols")
    coordinator_url: str = Field(default=DEFAULT_COORDINATOR_URL, description=(
        "the coordinator's base URL; plain http on loopback only"))
    api_token: SecretStr = Field(description="bearer token of this party's admin at the coordinator")
    state_dir: Path | None = Field(default=None, description="keys, certificate and node.db; default .tandem/<party>")
    listen_host: str = Field(default="127.0.0.1", description="address the mutual-TLS data plane binds")
    listen_port: int = Field(default=8443, ge=1, le=65535, description="port of the mutual-TLS data plane")
    node_url: str | None = Field(default=None, description="public https URL of this node; default https://localhost:<port>")
    tls_hostnames: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"],
        description="names and IPs written into the certificate's SAN (node_url's host is added)",
    )
    coordinator_ca: Path | None = Field(
        default=None, description="CA bundle to verify an https coordinator; None uses the system store"
    )
    coordinator_key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description=(
            "the coordinator's audit public key (hex, from its operator out of band: tandem-coordinator public-key); "
            "init and serve refuse a coordinator with another key. None skips the check"))
    max_clock_skew: float = Field(default=300.0, gt=0.0, le=86_400.0, description=(
        "largest difference in seconds between this machine's clock and the coordinator's (its HTTP Date header) "
        "that init and serve accept"))
    poll_interval: float = Field(default=2.0, gt=0.0, le=3600.0,
                                 description="seconds between the job runner's polls of the coordinator")
    chunk_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                             description="size of one data-plane body chunk")
    max_message_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024,
        description="largest data-plane message accepted (the largest the jobs send is SecureBoost's first tree: "
                    "512 bytes per training row with 2048-bit keys, about 122 MiB for 250,000 rows; PSI frames stay "
                    "under 2 MiB)",
    )
    max_pending_messages: int = Field(
        default=8, ge=1, le=1024, description="incomplete data-plane messages held per sender and job (429 past it)"
    )
    max_pending_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1024,
        description="bytes of incomplete data-plane messages held per sender and job (429 past it); "
                    "at least max_message_bytes",
    )
    scoring_api_key: SecretStr | None = Field(
        default=None, description="bearer key of the bank's local real-time scoring API; None disables the API"
    )
    scoring_host: str = Field(default="127.0.0.1", description="real-time scoring API address (loopback by default)")
    scoring_port: int = Field(default=8610, ge=0, le=65535,
                              description="real-time scoring API port (the bank's; the coordinator has 8600)")
    auditor_keys: list[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]] = Field(
        default_factory=list, description=(
            "hex Ed25519 public keys of the compliance officers this node trusts; a job that needs an "
            "auditor's approval (reveal mode, a field at or above auditor_level) runs only with a signature "
            "under one of them (configured here, never taken from the coordinator)"))
    auditor_level: int = Field(default=4, ge=1, le=5, description=(
        "security level (JR/T 0197, 1-5) from which a job using one of this node's fields needs an auditor's "
        "approval; the node's own rule, whatever the coordinator's policy says"))
    egress_capture_dir: Path | None = Field(
        default=None, description="keep a copy of every payload this node sends here (review and tests); off by default"
    )
    engine: Literal["serial", "pool", "spark"] = Field(default="pool", description=(
        "where the per-record PSI work runs: serial (in the node process), pool (a process pool over this "
        "machine's cores, for tables of 50,000 rows and more) or spark (Spark at spark_master); the bytes sent "
        "are identical whichever engine ran"))
    spark_master: str = Field(default="local[2]", description=(
        "Spark master URL when engine is spark (local[N], yarn, spark://host:7077, k8s://...)"))
    spark_conf: dict[str, str] = Field(default_factory=dict, description=(
        "extra Spark properties (JSON object) over the node's offline, loopback defaults; on a shared cluster "
        "set spark.authenticate, spark.network.crypto.enabled and spark.io.encryption.enabled (see node.spark)"))

    @field_validator("coordinator_url")
    @classmethod
    def _safe_url(cls, url: str) -> str:
        """http(s) only, and https off loopback (``check_coordinator_url``), with the setting named."""
        check_coordinator_url(url)
        return url

    @field_validator("api_token")
    @classmethod
    def _real_token(cls, token: SecretStr) -> SecretStr:
        """Refuse an empty or placeholder token (``changethis`` and the like) with the setting named."""
        if token.get_secret_value().strip().lower() in _PLACEHOLDER_TOKENS:
            raise ValueError("empty or a placeholder; set the token the coordinator issued "
                             "(tandem-coordinator user create prints it)")
        return token

    @model_validator(mode="after")
    def _fill_and_check(self) -> Self:
        if self.state_dir is None:
            self.state_dir = Path(".tandem") / self.party
        if self.node_url is None:
            self.node_url = f"https://localhost:{self.listen_port}"
        if not self.node_url.startswith("https://"):
            raise ValueError("node_url must start with https:// (the data plane is mutual TLS only)")
        if self.max_pending_bytes < self.max_message_bytes:
            raise ValueError(f"max_pending_bytes ({self.max_pending_bytes}) must be at least max_message_bytes "
                             f"({self.max_message_bytes}), or a message of the largest size could never arrive; "
                             "raise max_pending_bytes or lower max_message_bytes")
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
