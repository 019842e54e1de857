"""Limits of federated scoring: the telco's row caps and the bank API's rate limit, lockout and body bound.

One settings model for both nodes (environment variables ``TANDEM_SCORING_*``, or ``.env``); each node
reads the part that concerns it. The defaults are policy data: change them per deployment, not in code.

Telco (the membership-oracle bound): every real-time ``score`` call may carry at most
``rows_per_call`` pseudonyms, and each model may have at most ``rows_per_day`` rows answered per UTC
day (counted in the telco's ``node.db``, so a restart does not reset it).

Bank API (``POST /score/v1/{model_id}``): per client address, at most ``api_requests_per_minute``
requests; ``api_max_failed_keys`` wrong API keys within ``api_failed_key_window_s`` seconds lock that
address out for ``api_lockout_s`` seconds (even with the right key); a body larger than
``api_max_body_bytes`` is refused with 413 before it is read.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocols.wire.errors import ConfigError

__all__ = ["ENV_PREFIX", "ScoringLimits", "load_limits"]

ENV_PREFIX = "TANDEM_SCORING_"


class ScoringLimits(BaseModel):
    """Caps and rate limits of scoring (see the module docstring for who enforces which); ``load_limits`` reads them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows_per_call: int = Field(default=10_000, ge=1, le=262_144,
                               description="telco: pseudonyms one real-time score call may carry")
    rows_per_day: int = Field(default=1_000_000, ge=1,
                              description="telco: rows answered per model per UTC day (persisted)")
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                    description="bank API: largest request body accepted (413 above)")
    api_requests_per_minute: int = Field(default=6_000, ge=1,
                                         description="bank API: requests per client address per minute")
    api_max_failed_keys: int = Field(default=10, ge=1,
                                     description="bank API: wrong API keys within the window before lockout")
    api_failed_key_window_s: float = Field(default=60.0, gt=0.0, le=86_400.0,
                                           description="bank API: the window wrong keys are counted in, seconds")
    api_lockout_s: float = Field(default=300.0, gt=0.0, le=86_400.0,
                                 description="bank API: how long a client address stays locked out")

    @model_validator(mode="after")
    def _call_within_day(self) -> Self:
        if self.rows_per_call > self.rows_per_day:
            raise ValueError(f"{ENV_PREFIX}ROWS_PER_CALL must not exceed {ENV_PREFIX}ROWS_PER_DAY")
        return self


class _EnvLimits(ScoringLimits, BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True)


def load_limits() -> ScoringLimits:
    """The limits from the environment (``TANDEM_SCORING_*``) and ``.env``, defaults otherwise.

    Raises:
        ConfigError: a variable is malformed or out of range (named, with what is accepted).
    """
    try:
        return ScoringLimits(**_EnvLimits().model_dump())
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "".join(str(p) for p in err["loc"][:1])
        where = f"setting {ENV_PREFIX}{field.upper()}" if field else "scoring limits"
        raise ConfigError(f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from exc
