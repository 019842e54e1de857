"""Channel settings (``TANDEM_CHANNEL_*``): which channel the telco sends outreach through, and its limits.

One model for every node (environment variables ``TANDEM_CHANNEL_*`` or ``.env``); the telco reads it
when a job delivers messages. The defaults are the embedded outbox (no network at all), at most one
message per recipient per 24 hours across jobs, 10 messages a second, and quiet hours 21:00-08:00
China time during which messages are skipped (a retry outside the window sends them).
Secrets (the SMPP password, the webhook's HMAC secret) are read from files, never from the variable.
"""

from __future__ import annotations

import ipaddress
import zoneinfo
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocols.wire.errors import ConfigError

from ._core import QuietHours

__all__ = ["ENV_PREFIX", "ChannelSettings", "load_channel_settings", "read_secret"]

ENV_PREFIX = "TANDEM_CHANNEL_"


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChannelSettings(BaseModel):
    """How outreach leaves the telco; :func:`load_channel_settings` reads it from ``TANDEM_CHANNEL_*``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["outbox", "smpp", "webhook"] = Field(default="outbox", description=(
        "channel: outbox (embedded SQLite sink in the state dir), smpp (the telco's SMSC), webhook (HTTPS POST)"))
    rate_per_s: float = Field(default=10.0, gt=0.0, le=10_000.0, description="messages submitted per second, at most")
    recipient_limit: int = Field(default=1, ge=1, le=100, description=(
        "messages one recipient may get within recipient_window_s, across all jobs"))
    recipient_window_s: float = Field(default=86_400.0, gt=0.0, le=366 * 86_400.0,
                                      description="the window of recipient_limit, seconds")
    quiet_hours: str = Field(default="21:00-08:00", description=(
        "local-time window with no outreach, HH:MM-HH:MM (may wrap midnight); empty for none"))
    timezone: str = Field(default="Asia/Shanghai", description="IANA time zone of quiet_hours")
    quiet_mode: Literal["skip", "wait"] = Field(default="skip", description=(
        "in quiet hours: skip (counted; a retry later sends them) or wait until the window ends"))
    optout_path: Path | None = Field(default=None, description=(
        "opt-out (退订) list, one number a line; default <state_dir>/optout.txt (absent there: empty). "
        "Set but unreadable: the job fails, nothing sent"))
    receipt_wait_s: float = Field(default=2.0, ge=0.0, le=600.0,
                                  description="how long a delivery waits for receipts after its last message")
    bank_name: str = Field(default="", max_length=40, description="value of {bank_name} in message templates")
    app_link: str = Field(default="", max_length=200, description="value of {app_link} in message templates")
    optout: str = Field(default="拒收请回复R", max_length=40, description="value of {optout} (the opt-out hint)")
    outbox_path: Path | None = Field(default=None, description=(
        "outbox channel: SQLite file messages are written to; default <state_dir>/channel_outbox.db"))
    smpp_host: str = Field(default="127.0.0.1", description="smpp: the SMSC's host")
    smpp_port: int = Field(default=2775, ge=1, le=65535, description="smpp: the SMSC's port")
    smpp_system_id: str = Field(default="", max_length=15, description="smpp: system_id to bind with")
    smpp_password_file: Path | None = Field(default=None, description="smpp: file holding the bind password")
    smpp_system_type: str = Field(default="", max_length=12, description="smpp: system_type to bind with")
    smpp_bind: Literal["transceiver", "transmitter"] = Field(default="transceiver", description=(
        "smpp: bind mode (transceiver also receives delivery receipts)"))
    smpp_source_addr: str = Field(default="", max_length=20, description="smpp: source address (sender id)")
    smpp_timeout_s: float = Field(default=10.0, gt=0.0, le=300.0, description="smpp: socket timeout, seconds")
    smpp_reconnect_attempts: int = Field(default=3, ge=1, le=20,
                                         description="smpp: connection attempts before the channel counts as down")
    smpp_backoff_s: float = Field(default=1.0, ge=0.0, le=300.0,
                                  description="smpp: first reconnect delay, doubled per attempt")
    webhook_url: str = Field(default="", description="webhook: https URL messages are POSTed to (http on loopback)")
    webhook_secret_file: Path | None = Field(default=None, description="webhook: file holding the HMAC secret")
    webhook_ca: Path | None = Field(default=None, description="webhook: CA bundle; unset uses the system store")
    webhook_timeout_s: float = Field(default=10.0, gt=0.0, le=300.0, description="webhook: request timeout")
    webhook_retries: int = Field(default=3, ge=1, le=20, description="webhook: attempts per message")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.quiet_hours.strip():
            QuietHours.parse(self.quiet_hours, setting=f"{ENV_PREFIX}QUIET_HOURS")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{self.timezone!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
        if self.kind == "smpp" and (not self.smpp_system_id or self.smpp_password_file is None):
            raise ValueError(f"kind smpp needs {ENV_PREFIX}SMPP_SYSTEM_ID and {ENV_PREFIX}SMPP_PASSWORD_FILE")
        if self.kind == "webhook":
            parts = urlsplit(self.webhook_url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError(f"kind webhook needs {ENV_PREFIX}WEBHOOK_URL, an https URL")
            if parts.scheme == "http" and not _loopback(parts.hostname):
                raise ValueError(f"{ENV_PREFIX}WEBHOOK_URL: plain http is allowed on loopback only; use https://")
            if self.webhook_secret_file is None:
                raise ValueError(f"kind webhook needs {ENV_PREFIX}WEBHOOK_SECRET_FILE")
        return self

    def window(self) -> QuietHours | None:
        """The quiet hours, or None."""
        text = self.quiet_hours.strip()
        return QuietHours.parse(text, setting=f"{ENV_PREFIX}QUIET_HOURS") if text else None

    def template_values(self) -> dict[str, str]:
        """Values of the approved placeholders that are configured."""
        values = {"bank_name": self.bank_name, "app_link": self.app_link, "optout": self.optout}
        return {k: v for k, v in values.items() if v}


class _EnvChannel(ChannelSettings, BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True)


def load_channel_settings() -> ChannelSettings:
    """The channel settings from ``TANDEM_CHANNEL_*`` and ``.env``, defaults otherwise.

    Raises:
        ConfigError: a variable is malformed or inconsistent (named, with what is accepted).
    """
    try:
        return ChannelSettings(**_EnvChannel().model_dump())
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "".join(str(p) for p in err["loc"][:1])
        where = f"setting {ENV_PREFIX}{field.upper()}" if field else "channel settings"
        raise ConfigError(f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from exc


def read_secret(path: Path, setting: str) -> str:
    """A secret from a file (trailing newline dropped).

    Raises:
        ConfigError: the file is missing, unreadable or empty (naming ``setting``).
    """
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"setting {setting}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
    if not secret:
        raise ConfigError(f"setting {setting}: {path} is empty; write the secret into it")
    return secret
