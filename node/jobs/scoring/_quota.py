"""The telco's row caps on real-time scoring: how many pseudonyms a bank may ask about, per call and per day.

Each ``score`` call answers, for every pseudonym, whether the telco holds that subscriber: a
membership oracle. :class:`RowQuota` bounds it before anything is answered: a call with more than
``rows_per_call`` pseudonyms, or one that would take its model past ``rows_per_day`` rows in the
current UTC day, is refused (:class:`ScoringCapExceeded`, HTTP 429: which cap, the limit, when it
resets) and answered with nothing. Answered and refused calls and rows are counted per model and day
in the telco's ``node.db`` (table ``scoring_usage``), so a restart of the telco does not reset the
day. Rows of a refused call are not charged; rows of an accepted call are charged before it is
answered (a call that then fails is still charged: fail closed).

What each party learns: the telco learns (as it already does from each request) how many rows the
bank asks about per call, and keeps the per-day totals; the bank learns the caps and, when refused,
how many rows the model has used today — nothing about any subscriber.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from node.jobs.scoring._limits import ENV_PREFIX, ScoringLimits
from node.node_db import connect
from protocols.wire.errors import ProtocolError

__all__ = ["DailyUsage", "RowQuota", "ScoringCapExceeded", "utc_now"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS scoring_usage (
    model_id TEXT NOT NULL, day TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0, rows INTEGER NOT NULL DEFAULT 0,
    refused_calls INTEGER NOT NULL DEFAULT 0, refused_rows INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model_id, day))"""

_ANSWERED = "UPDATE scoring_usage SET calls = calls + 1, rows = rows + ? WHERE model_id = ? AND day = ?"
_REFUSED = ("UPDATE scoring_usage SET refused_calls = refused_calls + 1, refused_rows = refused_rows + ? "
            "WHERE model_id = ? AND day = ?")

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The current time in UTC (the quota's default clock)."""
    return dt.datetime.now(dt.UTC)


class ScoringCapExceeded(ProtocolError):
    """A score call would exceed a telco cap; nothing was answered."""

    status_hint = 429


@dataclass(frozen=True)
class DailyUsage:
    """One model's counts for one UTC day."""

    calls: int = 0
    rows: int = 0
    refused_calls: int = 0
    refused_rows: int = 0


class RowQuota:
    """Per-call and per-day row caps of real-time scoring, counted in ``db_path`` (the node's ``node.db``).

    Args:
        db_path: the node's state database (shared with the node's other tables).
        limits: ``rows_per_call`` and ``rows_per_day``.
        clock: current time, timezone-aware (tests pass a fixed one to cross midnight).
    """

    def __init__(self, db_path: Path, limits: ScoringLimits, *, clock: Clock = utc_now) -> None:
        self.limits, self._clock = limits, clock
        self._conn = connect(db_path)
        self._conn.execute(_SCHEMA)
        self._lock = threading.Lock()

    def charge(self, model_id: str, rows: int) -> None:
        """Admit a call of ``rows`` rows for ``model_id`` and count them, or refuse it and count the refusal.

        Raises:
            ScoringCapExceeded: over the per-call cap, or the model's rows today would exceed the daily cap.
        """
        now = self._clock().astimezone(dt.UTC)
        day = now.date().isoformat()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                used = self._usage(model_id, day).rows
                refusal = self._refusal(model_id, rows, used, now)
                self._conn.execute(
                    "INSERT OR IGNORE INTO scoring_usage (model_id, day) VALUES (?, ?)", (model_id, day))
                self._conn.execute(_REFUSED if refusal else _ANSWERED, (rows, model_id, day))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        if refusal:
            raise ScoringCapExceeded(refusal)

    def _refusal(self, model_id: str, rows: int, used: int, now: dt.datetime) -> str:
        per_call, per_day = self.limits.rows_per_call, self.limits.rows_per_day
        if rows > per_call:
            return (f"score call refused: {rows} rows exceed the telco's per-call cap of {per_call} rows "
                    f"({ENV_PREFIX}ROWS_PER_CALL); send at most {per_call} rows per call")
        if used + rows > per_day:
            resets = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
            return (f"score call refused: model {model_id} has used {used} of its daily cap of {per_day} rows "
                    f"({ENV_PREFIX}ROWS_PER_DAY) and this call asks for {rows} more; "
                    f"the cap resets at {resets.isoformat().replace('+00:00', 'Z')}")
        return ""

    def usage(self, model_id: str, day: dt.date | None = None) -> DailyUsage:
        """``model_id``'s counts on ``day`` (UTC; today by default)."""
        with self._lock:
            return self._usage(model_id, (day or self._clock().astimezone(dt.UTC).date()).isoformat())

    def _usage(self, model_id: str, day: str) -> DailyUsage:
        row = self._conn.execute(
            "SELECT calls, rows, refused_calls, refused_rows FROM scoring_usage WHERE model_id = ? AND day = ?",
            (model_id, day)).fetchone()
        return DailyUsage() if row is None else DailyUsage(*(int(v) for v in row))

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()
