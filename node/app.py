"""The node's HTTPS app (peer data plane + ``/healthz``) and the uvicorn server that runs it with mutual TLS.

Routes (all behind mutual TLS; the sender is the party whose pinned certificate it presented, and a
job's routes answer only the job's signed peer, see ``node.peer.PeerInbox``)::

    GET  /healthz
    GET  /peer/v1/jobs/{job_id}/{channel}/{seq}                    which chunks arrived
    POST /peer/v1/jobs/{job_id}/{channel}/{seq}                    one chunk (see node.peer)
    GET  /peer/v1/jobs/{job_id}/{channel}/{seq}/response/{index}   one chunk of the handler's response
    POST /peer/v1/calls/{name}                                     one-shot request/response (``PeerCall``)

``/peer/v1/calls/{name}`` serves small, latency-bound exchanges that are not job messages (real-time
federated scoring): one HTTP round trip, the body at most one chunk, nothing cached; the handlers
live in a mapping read at request time, so services may register them after the server started.

Each response body is recorded in this node's egress ledger before it is returned. uvicorn does not
hand the client certificate to ASGI apps, so ``_PinnedH11Protocol`` copies its fingerprint into the
per-connection ``scope["state"]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool
from uvicorn.protocols.http.h11_impl import H11Protocol

from node.keys import NodeKeys, tls_fingerprint
from node.ledger import EgressLedger, LedgerUnwritable
from node.peer import (
    CHANNEL_PATTERN,
    H_ATTEMPT,
    H_CHUNK,
    H_CHUNKS,
    H_DIGEST,
    H_KIND,
    H_RESP_CHUNKS,
    H_RESP_DIGEST,
    PEER_PREFIX,
    ChunkOutcome,
    PeerInbox,
    PinnedPeers,
    parse_attempt,
    server_ssl_context,
)
from protocols.wire.errors import ProtocolError

__all__ = ["NodeServer", "PeerCall", "build_node_app"]

PeerCall = Callable[[str, bytes], bytes]
"""Handler of ``POST /peer/v1/calls/{name}``: ``(sender party, request body) -> response body``."""

logger = logging.getLogger(__name__)

_PEER_FP = "tandem_peer_fingerprint"
_UNWRITABLE_DETAIL = ("node {party} cannot write its egress ledger (its state disk is full or read-only), so it sent "
                      "no reply; its operator must free space in the node's state directory, then retry the job")


class _PinnedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the client certificate's fingerprint in each request's state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(True) if ssl_object is not None else None
        self.app_state = {**self.app_state, _PEER_FP: tls_fingerprint(der) if der else None}


class _App:
    """Route implementations, bound to one node's inbox, pins and ledger."""

    def __init__(self, party: str, inbox: PeerInbox, pins: PinnedPeers, ledger: EgressLedger,
                 calls: Mapping[str, PeerCall]) -> None:
        self.party, self.inbox, self.pins, self.ledger = party, inbox, pins, ledger
        self.calls = calls

    def sender(self, request: Request) -> str:
        fingerprint = getattr(request.state, _PEER_FP, None)
        party = self.pins.party_for(fingerprint) if fingerprint else None
        if party is None:
            raise ProtocolError("client certificate is not pinned for any party", status_hint=403)
        return party

    def reply(
        self, peer: str, body: bytes, *, status: int = 200, job_id: int | None = None, kind: str = "",
        ref: str = "", media_type: str = "application/json", headers: dict[str, str] | None = None,
        attempt: int | None = None,
    ) -> Response:
        self.ledger.record(peer=peer, kind=kind, payload=body, job_id=job_id, ref=ref, attempt=attempt)
        return Response(content=body, status_code=status, media_type=media_type, headers=headers)

    def response_chunk(self, key: tuple[str, int, str, int], index: int, attempt: int | None) -> Response:
        kind, data = self.inbox.response(key, attempt)
        size = self.inbox.max_chunk_bytes
        count = max(1, -(-len(data) // size))
        if not 0 <= index < count:
            raise ProtocolError("response chunk index out of range", status_hint=404)
        headers = {H_RESP_CHUNKS: str(count), H_RESP_DIGEST: hashlib.sha256(data).hexdigest()}
        sender, job_id, channel, seq = key
        return self.reply(sender, data[index * size : (index + 1) * size], job_id=job_id, kind=f"{kind}.response",
                          ref=f"{channel}/{seq}/r{index + 1}of{count}", media_type="application/octet-stream",
                          headers=headers, attempt=attempt)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(f"chunk larger than {limit} bytes", status_hint=413)
    buf = bytearray()
    async for part in request.stream():
        buf += part
        if len(buf) > limit:
            raise ProtocolError(f"chunk larger than {limit} bytes", status_hint=413)
    return bytes(buf)


def _chunk_headers(request: Request) -> tuple[str, int, int, str]:
    try:
        kind = request.headers[H_KIND]
        index, count = int(request.headers[H_CHUNK]), int(request.headers[H_CHUNKS])
        digest = request.headers[H_DIGEST]
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"missing or bad headers {H_KIND}, {H_CHUNK}, {H_CHUNKS}, {H_DIGEST}") from exc
    if not CHANNEL_PATTERN.match(kind):
        raise ProtocolError(f"bad {H_KIND}")
    return kind, index, count, digest


def _attempt(request: Request) -> int | None:
    """The job attempt the frame names (``X-Tandem-Attempt``), or None."""
    return parse_attempt(request.headers.get(H_ATTEMPT))


def _receive(inbox: PeerInbox, key: tuple[str, int, str, int], kind: str, index: int, count: int, digest: str,
             data: bytes, attempt: int | None) -> ChunkOutcome:
    """Run ``inbox.receive``; a crashing channel handler becomes an opaque 500 (details stay in our log)."""
    try:
        return inbox.receive(key, kind, index, count, digest, data, attempt)
    except ProtocolError:
        raise
    except Exception as exc:
        logger.exception("handler for channel %s of job %s failed", key[2], key[1])
        raise ProtocolError(f"the receiving handler failed ({type(exc).__name__})", status_hint=500) from exc


def _call(fn: PeerCall, name: str, sender: str, data: bytes) -> bytes:
    """Run a call handler; a crash becomes an opaque 500 (details stay in our log)."""
    try:
        return fn(sender, data)
    except ProtocolError:
        raise
    except Exception as exc:
        logger.exception("call handler %s failed", name)
        raise ProtocolError(f"the call handler failed ({type(exc).__name__})", status_hint=500) from exc


def _add_call_route(app: FastAPI, core: _App) -> None:
    @app.post(PEER_PREFIX + "/calls/{name}")
    async def call(request: Request, name: str) -> Response:
        sender = core.sender(request)
        fn = core.calls.get(name)
        if fn is None or not CHANNEL_PATTERN.match(name):
            raise ProtocolError(f"no call {name!r} on this node", status_hint=404)
        data = await _read_body(request, core.inbox.max_chunk_bytes)
        body = await run_in_threadpool(_call, fn, name, sender, data)
        return core.reply(sender, body, kind=f"{name}.response", ref=name, media_type="application/octet-stream")


def _add_routes(app: FastAPI, core: _App) -> None:
    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        body = json.dumps({"status": "ok", "party": core.party}).encode()
        return core.reply(core.sender(request), body, kind="healthz")

    @app.get(PEER_PREFIX + "/jobs/{job_id}/{channel}/{seq}")
    async def status(request: Request, job_id: int, channel: str, seq: int) -> Response:
        sender = core.sender(request)
        attempt = _attempt(request)
        body = json.dumps(core.inbox.status((sender, job_id, channel, seq), attempt)).encode()
        return core.reply(sender, body, job_id=job_id, kind="status", ref=f"{channel}/{seq}", attempt=attempt)

    @app.post(PEER_PREFIX + "/jobs/{job_id}/{channel}/{seq}")
    async def chunk(request: Request, job_id: int, channel: str, seq: int) -> Response:
        sender = core.sender(request)
        attempt = _attempt(request)
        core.inbox.admit(sender, job_id, channel, attempt)  # a stranger or stale attempt: refused before the body
        kind, index, count, digest = _chunk_headers(request)
        data = await _read_body(request, core.inbox.max_chunk_bytes)
        key = (sender, job_id, channel, seq)
        outcome = await run_in_threadpool(_receive, core.inbox, key, kind, index, count, digest, data, attempt)
        if not outcome.complete:
            body = json.dumps({"received": outcome.received}).encode()
            return core.reply(sender, body, status=202, job_id=job_id, kind=f"{kind}.ack", ref=f"{channel}/{seq}",
                              attempt=attempt)
        return core.response_chunk(key, 0, attempt)

    @app.get(PEER_PREFIX + "/jobs/{job_id}/{channel}/{seq}/response/{index}")
    async def response(request: Request, job_id: int, channel: str, seq: int, index: int) -> Response:
        return core.response_chunk((core.sender(request), job_id, channel, seq), index, _attempt(request))


def build_node_app(party: str, inbox: PeerInbox, pins: PinnedPeers, ledger: EgressLedger, *,
                   calls: Mapping[str, PeerCall] | None = None) -> FastAPI:
    """The node's FastAPI app. Serve it with ``NodeServer`` (mutual TLS); it refuses unpinned senders.

    Args:
        party: this node's party name.
        inbox: receiver state of the job data plane.
        pins: pinned peer certificates (identify senders).
        ledger: egress ledger (every response body is recorded).
        calls: handlers of ``/peer/v1/calls/{name}``, looked up at request time (may be filled later).
    """
    app = FastAPI(title=f"Tandem node {party}", docs_url=None, redoc_url=None, openapi_url=None)
    core = _App(party, inbox, pins, ledger, {} if calls is None else calls)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> Response:
        if isinstance(exc, LedgerUnwritable):  # recording this refusal would fail too: it carries no data
            logger.error("a reply to %s was not sent: %s", request.url.path, exc)
            detail = _UNWRITABLE_DETAIL.format(party=core.party)
            return Response(content=json.dumps({"detail": detail}).encode(), status_code=exc.status_hint,
                            media_type="application/json")
        fingerprint = getattr(request.state, _PEER_FP, None)
        peer = (core.pins.party_for(fingerprint) if fingerprint else None) or "unknown"
        body = json.dumps({"detail": str(exc)}).encode()
        job = str(request.path_params.get("job_id", ""))  # so the ledger ties the refusal to its job
        return core.reply(peer, body, status=exc.status_hint, kind="error",
                          job_id=int(job) if job.isdigit() and len(job) <= 18 else None)

    _add_routes(app, core)
    _add_call_route(app, core)
    return app


class NodeServer:
    """uvicorn serving the node app on ``host:port`` with pinned mutual TLS (port 0 picks a free port)."""

    def __init__(self, app: FastAPI, keys: NodeKeys, pins: PinnedPeers, host: str, port: int, *,
                 log_level: str = "warning") -> None:
        self._sock = socket.create_server((host, port))
        self.host, self.port = host, int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, http=_PinnedH11Protocol, log_level=log_level, lifespan="off",
                                timeout_graceful_shutdown=5)
        config.load()
        config.ssl = server_ssl_context(keys, pins)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve in the foreground until interrupted."""
        self._server.run(sockets=[self._sock])

    def start(self, *, wait: float = 10.0) -> None:
        """Serve in a background thread and return once listening."""
        self._thread = threading.Thread(target=self._run_quietly, name=f"node-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ProtocolError("node server did not start", status_hint=500)
            time.sleep(0.01)

    def _run_quietly(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except Exception:  # noqa: BLE001 - a server thread must not die noisily
            logger.exception("node server stopped with an error")

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> NodeServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
