"""Helpers for tests of ``serve --workers N``: its worker processes, and steering requests between them.

Which worker takes a connection is the kernel's choice; ``paused`` stops one worker (SIGSTOP) so that the
others serve every new connection, and ``fresh_client`` opens a new connection for every request.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

from tests.support.coordinator import BOOT
from tests.support.live_coordinator import LiveCoordinator

__all__ = ["API", "READY", "create_user", "fresh_client", "paused", "wait_until", "worker_pids"]

API = "/api/v1"
READY = "Application startup complete"
"""What uvicorn logs once per worker that has started."""

T = TypeVar("T")


def worker_pids(pid: int) -> list[int]:
    """The uvicorn worker processes ``pid`` started (multiprocessing spawn children)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def wait_until(what: str, check: Callable[[], T], coordinator: LiveCoordinator, timeout: float = 180.0) -> T:
    """``check()``'s first true value, polled; an AssertionError with the server's output after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout:.0f} s; server output:\n{coordinator.output()[-3000:]}")


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """Worker ``pid`` stopped: it accepts no connection until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def fresh_client(coordinator: LiveCoordinator) -> httpx.Client:
    """A client whose every request opens a new connection (so any worker may take it)."""
    return httpx.Client(base_url=coordinator.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0),
                        follow_redirects=False)


def create_user(c: httpx.Client, name: str, role: str, party: str | None = None) -> str:
    """Create a user with the bootstrap token; its API token."""
    body = {"name": name, "role": role, **({"party": party} if party else {})}
    r = c.post(f"{API}/users", json=body, headers={"Authorization": f"Bearer {BOOT}"})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])
