"""A toy arbiter and toy node service for tests and the hop benchmark.

The arbiter sums numbers the parties' services return.

Round r sends every party ``{"round": r, "total": <sum so far>}`` (JSON). Each party's node service
answers ``{"value": <number>}``. After ``rounds`` rounds (``arbiter-config`` ``{"rounds": N}``,
default 3) the result is ``{"total": ..., "replies": [{party: reply-as-text}, ...]}``.

What each party learns: the running total. Not a real protocol; it exists to prove the plumbing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from coordinator.flower.arbiter import ArbiterContext, Payloads


class SumArbiter:
    """Sums the ``value`` every party answers, for a fixed number of rounds."""

    def __init__(self, parties: tuple[str, ...], rounds: int) -> None:
        if rounds < 1:
            raise ValueError("rounds must be >= 1")
        self._parties = parties
        self._rounds = rounds
        self._round = 0
        self._total = 0.0
        self._replies: list[dict[str, str]] = []

    def _payloads(self) -> Payloads:
        self._round += 1
        body = json.dumps({"round": self._round, "total": self._total}).encode()
        return {party: body for party in self._parties}

    def start(self) -> Payloads:
        """First round: total 0."""
        return self._payloads()

    def handle(self, replies: Payloads) -> Payloads | None:
        """Add every party's value; continue until the configured number of rounds."""
        self._replies.append({party: raw.decode() for party, raw in sorted(replies.items())})
        self._total += sum(float(json.loads(raw)["value"]) for raw in replies.values())
        return None if self._round >= self._rounds else self._payloads()

    def result(self) -> bytes:
        """The total and every reply, as JSON."""
        return json.dumps({"total": self._total, "replies": self._replies}).encode()


def sum_arbiter(context: ArbiterContext) -> SumArbiter:
    """Arbiter factory (run config ``arbiter = "demo.flower_toy:sum_arbiter"``)."""
    return SumArbiter(context.parties, int(context.config.get("rounds", 3)))


@dataclass
class ServiceCall:
    """One POST a :class:`ToyService` answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    answer: bytes
    at: float
    """``time.monotonic()`` when the call arrived."""


@dataclass
class ToyService:
    """A stand-in node service (or report endpoint) on a loopback thread; records every answered call.

    ``respond(path, body) -> bytes`` makes the answer; if it raises, the service answers 500 and
    records nothing. Use as a context manager.
    """

    respond: Callable[[str, bytes], bytes]
    calls: list[ServiceCall] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service."""
        if self._server is None:
            raise RuntimeError("service not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ToyService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                arrived = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    answer = service.respond(self.path, body)
                except Exception as err:  # noqa: BLE001 - a failing toy service answers 500
                    self.send_error(500, f"{type(err).__name__}: {err}")
                    return
                service.calls.append(ServiceCall(self.path, dict(self.headers), body, answer, arrived))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Stay quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def adder(base: float) -> Callable[[str, bytes], bytes]:
    """A node service behaviour for :class:`SumArbiter`: answer ``{"value": base + round}``."""

    def respond(_path: str, body: bytes) -> bytes:
        return json.dumps({"value": base + json.loads(body)["round"]}).encode()

    return respond


def sink(_path: str, _body: bytes) -> bytes:
    """A report endpoint behaviour: answer nothing."""
    return b""
