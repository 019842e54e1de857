"""The bank's real-time scoring API and the serve-time services of both nodes.

Route (bank node, plain HTTP bound to loopback by default — ``scoring_host``/``scoring_port`` in the
node settings — and always behind a bearer key, ``scoring_api_key``; unset key = API off)::

    POST /score/v1/{model_id}    Authorization: Bearer <scoring_api_key>
         {"customer_id": "C000123"}                               look the customer up in the model's
                                                                  training dataset, or
         {"id_number": "...", "features": {"age": 41, ...}}       score the given features
      -> {"model_id": "m7", "score": 0.083, "outcome": "scored" | "no_telco_data", "latency_ms": 3.1}

Errors: 401 missing/wrong key, 404 unknown model or customer, 413 a body over ``api_max_body_bytes``
(refused before it is read), 422 wrong features or a scoring schema that differs from training, 429
(with ``Retry-After``) a client address over ``api_requests_per_minute`` or locked out after
``api_max_failed_keys`` wrong keys, or the telco's row cap for the model reached (the telco's message,
naming the cap and when it resets), 502 the telco node failed or refused. The limits are
:class:`~node.jobs.scoring._limits.ScoringLimits` (``TANDEM_SCORING_*``), enforced by
:class:`~node.jobs.scoring._guard.ApiGuard` before the body is read. ``no_telco_data`` carries the
bank-only fallback score (``null`` if the model has no fallback): never a silent default. Neither
identifiers nor features are logged. The API is meant for the bank's own systems on the same host or
a private network; put TLS in front of it before exposing it beyond loopback.

Services (``build_cli(..., services=[...])``): :func:`bank_scoring_service` starts this API beside
the node; :func:`telco_scoring_service` registers the ``score`` peer call under the telco's row caps
(:mod:`node.jobs.scoring._quota`) and preloads every passive model (pseudonym index built once per model).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from node.jobs.scoring._caller import PeerCaller
from node.jobs.scoring._guard import ApiGuard
from node.jobs.scoring._limits import ScoringLimits, load_limits
from node.jobs.scoring._quota import RowQuota, utc_now
from node.jobs.scoring.service import SCORE_CALL, BankScoring, TelcoScoring
from node.model_store import ModelStore
from node.node_db import NODE_DB
from node.peer import PeerError
from node.runtime import NodeRuntime
from protocols.wire.errors import ProtocolError

__all__ = [
    "ScoreApiRequest",
    "ScoreApiResponse",
    "ScoringApiServer",
    "bank_scoring_service",
    "build_scoring_api",
    "telco_scoring_service",
]

logger = logging.getLogger(__name__)


class ScoreApiRequest(BaseModel):
    """One customer to score (``customer_id``, or ``id_number`` with ``features``)."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    id_number: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    features: dict[str, float | int | bool | None] | None = Field(default=None, max_length=500)


class ScoreApiResponse(BaseModel):
    """The score, how it was obtained, and the time the bank node spent."""

    model_id: str
    score: float | None
    outcome: Literal["scored", "no_telco_data"]
    latency_ms: float


def build_scoring_api(scoring: BankScoring, api_key: SecretStr, limits: ScoringLimits | None = None, *,
                      clock: Callable[[], float] = time.monotonic) -> ASGIApp:
    """The real-time scoring app over ``scoring`` behind :class:`ApiGuard` (key ``api_key``, ``limits``).

    Args:
        scoring: the bank's scoring service.
        api_key: the bearer key; whoever holds it can score any customer, so keep it to the bank's systems.
        limits: rate limit, lockout and body bound (``ScoringLimits()`` defaults when ``None``).
        clock: monotonic seconds for the guard (tests move it).
    """
    app = FastAPI(title="Tandem bank scoring", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        status = exc.status_hint
        if isinstance(exc, PeerError):
            status = 429 if exc.http_status == 429 else 502
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.post("/score/v1/{model_id}")
    async def score(model_id: str, body: ScoreApiRequest) -> ScoreApiResponse:
        start = time.perf_counter()
        value, outcome = await run_in_threadpool(scoring.score, model_id, customer_id=body.customer_id,
                                                 id_number=body.id_number, features=body.features)
        return ScoreApiResponse(model_id=model_id, score=value, outcome=outcome,
                                latency_ms=round((time.perf_counter() - start) * 1000, 3))

    return ApiGuard(app, api_key, limits or ScoringLimits(), clock=clock)


class ScoringApiServer:
    """uvicorn serving the scoring app on ``host:port`` in a background thread (port 0: a free port)."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self._sock = socket.create_server((host, port))
        self.host, self.port = host, int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"scoring-api-{self.port}", daemon=True)

    def start(self, *, wait: float = 10.0) -> None:
        """Start serving; return once listening."""
        self._thread.start()
        deadline = time.monotonic() + wait
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ProtocolError("scoring API did not start", status_hint=500)
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def bank_scoring(rt: NodeRuntime) -> BankScoring:
    """A :class:`BankScoring` over a node runtime (peer keys and URLs from the coordinator registry)."""
    cache: dict[str, str] = {}

    def peer_key(party: str) -> str:
        if party not in cache:
            cache[party] = rt.coordinator.party(party).sealing_key
        return cache[party]

    def caller(party: str) -> PeerCaller:
        return PeerCaller(rt.coordinator.party(party), rt.keys, rt.pins, rt.ledger)

    return BankScoring(ModelStore(rt.settings.state_path), rt.keys, rt.datasets, peer_key, caller)


def telco_scoring(rt: NodeRuntime, limits: ScoringLimits | None = None, *,
                  clock: Callable[[], dt.datetime] = utc_now) -> TelcoScoring:
    """A :class:`TelcoScoring` over a node runtime, registered as its ``score`` peer call.

    Args:
        rt: the telco node's runtime (row counts go to its ``node.db``).
        limits: the row caps (``TANDEM_SCORING_*`` from the environment when ``None``).
        clock: the current UTC time (tests cross midnight with their own).
    """
    cache: dict[str, str] = {}

    def peer_key(party: str) -> str:
        if party not in cache:
            cache[party] = rt.coordinator.party(party).sealing_key
        return cache[party]

    quota = RowQuota(rt.settings.state_path / NODE_DB, limits or load_limits(), clock=clock)
    service = TelcoScoring(ModelStore(rt.settings.state_path), rt.keys, rt.datasets, peer_key, quota)
    rt.calls[SCORE_CALL] = service.handle_call
    return service


@contextlib.contextmanager
def bank_scoring_service(rt: NodeRuntime) -> Iterator[ScoringApiServer | None]:
    """Serve the real-time API while the node serves (nothing when ``scoring_api_key`` is unset)."""
    key = rt.settings.scoring_api_key
    if key is None:
        yield None
        return
    limits = load_limits()
    scoring = bank_scoring(rt)
    server = ScoringApiServer(build_scoring_api(scoring, key, limits), rt.settings.scoring_host,
                              rt.settings.scoring_port)
    server.start()
    logger.info("real-time scoring API on http://%s:%d/score/v1/", server.host, server.port)
    try:
        yield server
    finally:
        server.stop()
        scoring.close()


@contextlib.contextmanager
def telco_scoring_service(rt: NodeRuntime) -> Iterator[TelcoScoring]:
    """Answer ``score`` calls while the node serves; preload every passive model first."""
    service = telco_scoring(rt)
    loaded = service.preload()
    logger.info("scoring: %d model(s) preloaded", len(loaded))
    try:
        yield service
    finally:
        rt.calls.pop(SCORE_CALL, None)
        service.close()
