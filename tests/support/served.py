"""A real coordinator behind a real uvicorn server on a loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from coordinator.app import create_app
from tests.support.coordinator import app_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_coordinator(tmp_path: Path, **settings: Any) -> Iterator[tuple[str, httpx.Client]]:
    """Serve a fresh coordinator (SQLite in ``tmp_path``) over HTTP; yield its URL and a client bound to it."""
    values = {"database_url": f"sqlite:///{tmp_path}/coord.db", **settings}
    app = create_app(app_settings(tmp_path, **values))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the coordinator did not start")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            client.app = app  # type: ignore[attr-defined]  # World reads app.state like a TestClient
            yield url, client
    finally:
        server.should_exit = True
        thread.join(15)
