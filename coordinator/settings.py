"""Coordinator settings: one ``Settings`` object, read from ``TANDEM_COORD_*`` environment variables.

Secrets have no usable default: outside ``dev`` the bootstrap token must be set and must not be a
placeholder. ``get_settings`` is the FastAPI dependency (tests override it or pass settings to
``create_app``).

State directories (``state_dirs``: where the SQLite database, the audit key and the audit heads file
live) must be private to the coordinator's user: ``check_state_dirs`` creates missing ones with mode
0700 and refuses one that its group or others may read or write, naming the path and the ``chmod``.
"""

from __future__ import annotations

import stat
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from protocols.wire.errors import ConfigError

__all__ = ["PLACEHOLDER_SECRETS", "Settings", "check_private_dir", "get_settings"]

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "changeme", "change-me", "secret", "password", "token", "bootstrap"})
MIN_TOKEN_CHARS = 24
MEMORY_DATABASES = frozenset({"sqlite://", "sqlite:///:memory:"})
AUDIT_HEADS_FILE = "audit_heads.json"
DATABASE_FILE, KEY_FILE = "coordinator.db", "coordinator_signing.key"


class Settings(BaseSettings):
    """Everything the coordinator reads from its environment.

    Attributes:
        state_dir: the coordinator's state directory; the database and the audit key default inside it.
            Relative paths are relative to the working directory, so give an absolute one.
        database_url: SQLAlchemy URL; default SQLite at ``<state_dir>/coordinator.db``; PostgreSQL in production.
        policy_path: policy YAML; None means the policy bundled with the coordinator.
        signing_key_path: 32-byte Ed25519 seed signing the audit head; default
            ``<state_dir>/coordinator_signing.key``. Created (mode 0600) by ``serve`` and ``init-db`` if missing.
            Whoever reads this file can forge signed audit heads.
        audit_heads_path: file holding the audit chain's last signed head (``coordinator.audit.heads``);
            default ``audit_heads.json`` beside the signing key. Unused with an in-memory database.
        bootstrap_token: may create users and nothing else. Anyone holding it can create an admin
            of any party, so keep it out of shells' history and rotate it after setup.
        max_body_bytes: request bodies above this size are refused with 413 before parsing.
        auth_failure_burst: failed authentications (401) a client address may make at once before every
            request from it is refused with 429 (``coordinator.api.middleware.ClientRateLimit``).
        auth_failure_refill_seconds: one more failure is allowed per this many seconds.
        auth_failed_window_seconds: at most one chained ``auth.failed`` event per client address, channel
            and reason in each window of this length; it counts the repeats of the window before.
        audit_head_interval_ms: the audit chain's signed head (``audit_heads.json``) is written at most once per
            this many milliseconds (group commit, ``coordinator.audit.heads``): after a crash it may lag the log
            by this long, so a tail deleted within it goes unnoticed; a clean stop writes the newest head. 0
            writes one per audited write (about 6 ms each, serialised).
        tls_cert / tls_key: PEM certificate (with any intermediate chain) and key ``serve`` offers over HTTPS
            (TLS 1.3 only); both or neither. Without them ``serve`` binds loopback only. Whoever reads the key
            can impersonate the coordinator to every node that trusts its CA.
        insecure_http: serve plain HTTP on a non-loopback interface: only behind a TLS-terminating reverse
            proxy on the same host or network segment (tokens and cookies cross the hop to it in clear).
        workers: API processes ``serve`` runs (uvicorn workers on one port and one database). One serves
            about 250 requests/s on 2 cores (``bench/api_bench.py``); more use more cores. Every worker sees the
            same jobs, audit log, users and browser sessions, all of which live in the database. What each
            keeps to itself: its token cache, so a revocation made through one worker takes effect in the
            others within 2 s (``coordinator.principal_cache``); its answer cache (1 s); and its share of the
            failed-authentication limit (``per_worker``). Not with an in-memory database.
        dev: relaxes the secret checks; never set in production.
    """

    model_config = SettingsConfigDict(env_prefix="TANDEM_COORD_", extra="ignore")

    state_dir: Path = Path(".tandem")
    database_url: str = "sqlite:///.tandem/coordinator.db"
    policy_path: Path | None = None
    signing_key_path: Path = Path(".tandem/coordinator_signing.key")
    audit_heads_path: Path | None = None
    bootstrap_token: SecretStr | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    auth_failure_burst: int = Field(default=100, ge=1, le=100_000)
    auth_failure_refill_seconds: float = Field(default=1.0, gt=0, le=86_400)
    auth_failed_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    audit_head_interval_ms: int = Field(default=200, ge=0, le=60_000)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_http: bool = False
    workers: int = Field(default=1, ge=1, le=32)
    dev: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults_in_state_dir(cls, data: Any) -> Any:
        """Put the database and the audit key inside ``state_dir`` unless they are set themselves."""
        if isinstance(data, dict):
            state = Path(data.get("state_dir") or ".tandem")
            data = {"database_url": f"sqlite:///{state / DATABASE_FILE}", "signing_key_path": state / KEY_FILE,
                    **{k: v for k, v in data.items() if v is not None or k not in ("database_url", "signing_key_path")}}
        return data

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Self:
        """Refuse a missing, short or placeholder bootstrap token unless ``dev`` is set."""
        if self.dev:
            return self
        token = self.bootstrap_token.get_secret_value() if self.bootstrap_token else ""
        if token.strip().lower() in PLACEHOLDER_SECRETS or len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                "TANDEM_COORD_BOOTSTRAP_TOKEN must be set to a random value of at least "
                f"{MIN_TOKEN_CHARS} characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                "or set TANDEM_COORD_DEV=1 for local development"
            )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        """``tls_cert`` and ``tls_key`` come together."""
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("TLS_CERT", "TLS_KEY") if self.tls_key is None else ("TLS_KEY", "TLS_CERT")
            raise ValueError(f"TANDEM_COORD_{given} is set but TANDEM_COORD_{missing} is not; set both (the "
                             "certificate and its key) or neither")
        return self

    @model_validator(mode="after")
    def _workers_share_a_database(self) -> Self:
        """Several workers need a database they can all open: a file or a server, not process memory."""
        if self.workers > 1 and _in_process_memory(self.database_url):
            raise ValueError(f"{self.workers} workers cannot share an in-memory database (each process would have "
                             "its own); set TANDEM_COORD_DATABASE_URL to a database file or PostgreSQL, or "
                             "TANDEM_COORD_WORKERS=1")
        return self

    def per_worker(self) -> Settings:
        """These settings for one of ``workers`` processes: the failed-authentication limit shared out.

        Each worker keeps its own buckets and a client's connections land on any of them, so each gets
        ``1/workers`` of the burst and refills ``workers`` times slower: together about the configured limit.
        """
        n = self.workers
        return self.model_copy(update={"auth_failure_burst": max(1, -(-self.auth_failure_burst // n)),
                                       "auth_failure_refill_seconds": self.auth_failure_refill_seconds * n})

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, if the database is one."""
        url = self.database_url
        if url in MEMORY_DATABASES or not url.startswith("sqlite:///"):
            return None
        return Path(url.removeprefix("sqlite:///"))

    @property
    def heads_path(self) -> Path | None:
        """Where the audit chain's signed head is kept; None for an in-memory database (nothing to compare)."""
        if self.database_url in MEMORY_DATABASES:
            return None
        return self.audit_heads_path or self.signing_key_path.parent / AUDIT_HEADS_FILE

    def state_dirs(self) -> list[Path]:
        """The directories holding the database file, the audit key and the heads file."""
        files = [self.sqlite_path, self.signing_key_path, self.heads_path]
        return list(dict.fromkeys(f.parent for f in files if f is not None))

    def check_state_dirs(self) -> None:
        """Create missing state directories (mode 0700) and refuse ones others can read or write.

        Raises:
            ConfigError: naming the directory, its mode and the ``chmod`` that fixes it.
        """
        for directory in self.state_dirs():
            check_private_dir(directory)


def check_private_dir(directory: Path) -> None:
    """Create ``directory`` with mode 0700 if missing; refuse it if group or others have any access.

    Raises:
        ConfigError: naming the directory, its mode and the fix.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"state directory {directory} is open to other users (mode {mode:o}): it holds the "
                          f"coordinator's database, audit key and signed audit head. Fix: chmod 700 {directory}")


def _in_process_memory(url: str) -> bool:
    """Whether ``url`` names a SQLite database in process memory, however it is spelled.

    Besides ``MEMORY_DATABASES``: another driver (``sqlite+pysqlite://``), an empty or ``:memory:`` path,
    ``mode=memory``. Each process that opens such a URL gets a database of its own.
    """
    if url in MEMORY_DATABASES:
        return True
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False
    return parsed.get_backend_name() == "sqlite" and (parsed.database in (None, "", ":memory:")
                                                       or parsed.query.get("mode") == "memory")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (cached). FastAPI dependency; override it in tests."""
    return Settings()
