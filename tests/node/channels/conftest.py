"""Fixtures of the channel tests: a controllable clock and channel settings in a temporary state dir."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field

import pytest


@dataclass
class FakeClock:
    """An injected clock: ``sleep`` advances it (thread-safe)."""

    current: dt.datetime
    slept: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> dt.datetime:
        with self._lock:
            return self.current

    def sleep(self, seconds: float) -> None:
        with self._lock:
            if seconds > 0:
                self.slept.append(seconds)
                self.current += dt.timedelta(seconds=seconds)


class WallClock:
    """Real time, recording every requested sleep (a down channel's back-off is shortened to nothing)."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def noon() -> FakeClock:
    """12:00 in Shanghai: outside the default quiet hours."""
    return FakeClock(dt.datetime(2026, 12, 5, 12, 0, tzinfo=SHANGHAI))


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "telco-state"
    path.mkdir(mode=0o700)
    return path
