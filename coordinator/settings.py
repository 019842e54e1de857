"""Coordinator settings: one ``Settings`` object, read from ``TANDEM_COORD_*`` environment variables.

Secrets have no usable default: outside ``dev`` the bootstrap token must be set and must not be a
placeholder. ``get_settings`` is the FastAPI dependency (tests override it or pass settings to
``create_app``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PLACEHOLDER_SECRETS", "Settings", "get_settings"]

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "changeme", "change-me", "secret", "password", "token", "bootstrap"})
MIN_TOKEN_CHARS = 24


class Settings(BaseSettings):
    """Everything the coordinator reads from its environment.

    Attributes:
        database_url: SQLAlchemy URL; SQLite for the demo, PostgreSQL in production.
        policy_path: policy YAML; None means the policy bundled with the coordinator.
        signing_key_path: 32-byte Ed25519 seed signing the audit head. Created (mode 0600) if missing.
            Whoever reads this file can forge signed audit heads.
        bootstrap_token: may create users and nothing else. Anyone holding it can create an admin
            of any party, so keep it out of shells' history and rotate it after setup.
        max_body_bytes: request bodies above this size are refused with 413 before parsing.
        dev: relaxes the secret checks; never set in production.
    """

    model_config = SettingsConfigDict(env_prefix="TANDEM_COORD_", extra="ignore")

    database_url: str = "sqlite:///.tandem/coordinator.db"
    policy_path: Path | None = None
    signing_key_path: Path = Path(".tandem/coordinator_signing.key")
    bootstrap_token: SecretStr | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    dev: bool = False

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (cached). FastAPI dependency; override it in tests."""
    return Settings()
