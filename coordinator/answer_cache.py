"""Answers of hot read endpoints kept while the data they were read from is unchanged.

A node polls for its party's jobs every few seconds; a hundred nodes ask the same few questions
(party x status) far more often than the jobs change. ``AnswerCache`` keeps each answer (the JSON
bytes sent) under the store's write versions (``SqlStore.versions``) read *before* the data: a write
that commits counts its version afterwards, so an answer is never served under a version newer than
the data it holds; the next request after any committed write of this process re-reads the store. A
write by another process on the same database (the CLI) is not counted, so every answer is also
dropped after ``ttl`` seconds (default 1 s). Stores without versions (``MemoryStore``) are not cached.
Answers hold only what the endpoint would send to a caller with the same key (party, role, status).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["DEFAULT_TTL_SECONDS", "AnswerCache"]

DEFAULT_TTL_SECONDS = 1.0
MAX_ENTRIES = 1_000


@dataclass(frozen=True)
class _Answer:
    version: tuple[int, ...]
    until: float
    body: bytes


class AnswerCache:
    """Key -> JSON bytes, valid while the given version is unchanged and for at most ``ttl`` seconds."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._answers: dict[Hashable, _Answer] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: tuple[int, ...]) -> bytes | None:
        """The answer stored under ``key`` at ``version`` if still fresh, else None."""
        answer = self._answers.get(key)
        if answer is None or answer.version != version or answer.until <= self.clock():
            return None
        return answer.body

    def put(self, key: Hashable, version: tuple[int, ...], body: bytes) -> None:
        """Keep ``body`` for ``key``, read from the store after ``version`` was read."""
        with self._lock:
            if len(self._answers) >= self.max_entries:
                self._answers.clear()
            self._answers[key] = _Answer(version, self.clock() + self.ttl, body)
