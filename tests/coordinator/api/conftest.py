"""A real coordinator: the FastAPI app served by uvicorn on a loopback port (in a thread of the test process).

The app is the one ``create_app`` builds, reached over TCP with httpx, so every request passes the
middleware, the access table and the store exactly as in production; the client address is 127.0.0.1.
Running it in-process lets a test move the app's clock (token expiry, failure windows).
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from coordinator.app import create_app
from tests.support.coordinator import World, app_settings

START_TIMEOUT_S = 30.0


class LiveCoordinator:
    """A served app, its base URL, and a clock the test moves forward (the real time plus an offset)."""

    def __init__(self, app: FastAPI, url: str) -> None:
        self.app, self.url = app, url
        self.offset = timedelta(0)
        app.state.context = dataclasses.replace(app.state.context, clock=self.now)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    @property
    def ctx(self) -> Any:
        return self.app.state.context

    def advance(self, delta: timedelta) -> None:
        self.offset += delta

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def stored_events(self) -> list[dict[str, Any]]:
        """Every event in the store (read in-process, not through the API)."""
        with self.ctx.store.read() as tx:
            return [{"seq": r.seq, **r.body} for r in tx.audit.events(-1, 1_000_000)]


def _serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    return server, thread, url


def live_coordinator(tmp_path: Path, **settings: Any) -> Iterator[LiveCoordinator]:
    """Serve a fresh coordinator over a SQLite file in ``tmp_path`` (settings overridden by ``settings``)."""
    app = create_app(app_settings(tmp_path, database_url=f"sqlite:///{tmp_path}/coord.db", **settings))
    server, thread, url = _serve(app)
    try:
        yield LiveCoordinator(app, url)
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        app.state.context.store.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveCoordinator]:
    """A real coordinator with default settings."""
    yield from live_coordinator(tmp_path)


@pytest.fixture
def live_world(live: LiveCoordinator) -> Iterator[World]:
    """Bank and telco registered, one user per role, a dataset each, created over HTTP."""
    with live.client() as c:
        yield World(c).populate()
