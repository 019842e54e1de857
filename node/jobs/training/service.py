"""The node side of the training plane: job handlers, the Flower round endpoint, the node's SuperNode.

One :class:`TrainingService` per node process (``tandem-bank`` / ``tandem-telco``)::

    handlers()   JobHandlers for train_risk (hetero LR) and train_propensity (SecureBoost)
    serve(rt)    NodeService for ``serve``: a loopback-only HTTP endpoint
                     POST /flower/v1/{run_id}/{round}   (the Flower ClientApp shim's target)
                 data-plane channels train.* on the node's inbox, and, when configured, the node's
                 own SuperNode process pointed at that endpoint (started again whenever it exits:
                 :mod:`node.flower.supernode_keeper`)

A job's handler (runner thread) reads and checks the party's rows, aligns them with the peer
(:mod:`node.jobs.training.alignment`), registers a :class:`~node.jobs.training._party.PartyJob` that
the round endpoint and the data plane drive, and waits until the job stores its model part or fails:
because the job failed at the coordinator (e.g. the arbiter reported a lost node), a round or exchange
failed here, or no round arrived for ``idle_timeout`` seconds. A failed job stores nothing; a
``train_risk`` job keeps its per-iteration checkpoints (``<state>/training/checkpoints/<job_id>/``), so
running the same job again resumes (:mod:`node.jobs.training.checkpoints`).

The round endpoint listens on 127.0.0.1 only: the ClientApp shim runs on this host beside the
SuperNode. It refuses (401, before reading anything else) a POST without this ``serve``'s random round
token, which only the node's own SuperNode keeper and ClientApp runner receive (in their environment),
so another local process cannot feed a job rounds or fail it. It accepts rounds only for jobs this node
is running (approved, own approval verified by the runner) and for its own party name.

Which attempt. A retried job runs again as a new attempt, with a new Flower run (the coordinator's
launcher starts one per attempt and every instruction names it; the shim sends it in ``X-Tandem-Attempt``,
the data plane's header, parsed by :func:`node.peer.parse_attempt`). A round of an older attempt than
the one running here (a message of the previous run still queued at the SuperNode) is refused with 410
before the job sees it, so it can neither bind the current attempt to its run nor feed or fail it; the
stale run's ServerApp gets the error and ends. A round of a newer attempt waits (up to two minutes) for
the runner to start that attempt here, and stops the stale attempt still registered meanwhile; a round
naming no attempt for a job that runs one is refused (400). What each party learns is stated in
:mod:`node.jobs.training`.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from node.approval import lineage_digest
from node.jobs.training._data import PartyData, read_party_data
from node.jobs.training._party import JobSpec, PartyJob, make_party_job
from node.jobs.training.alignment import PSI_CHANNELS, Aligned, AlignmentSender, align_as_receiver
from node.jobs.training.checkpoints import checkpoint_dir
from node.ledger import COORDINATOR_PEER, EgressLedger
from node.model_store import ModelStore
from node.peer import H_ATTEMPT, PeerMessage, parse_attempt
from node.runner import JobContext, JobHandler
from node.runtime import NodeRuntime
from protocols.vfl.model_parts import DataDigests, FallbackModel, FeatureColumn, ModelCard, ModelMetrics
from protocols.vfl.rounds import DEFAULT_LR_ITERATIONS, TrainingError
from protocols.wire.control import JobInput, JobKind
from protocols.wire.errors import ProtocolError

__all__ = ["TrainingNodeSettings", "TrainingService"]

logger = logging.getLogger(__name__)

CHANNELS = (*PSI_CHANNELS.values(), "train.lr", "train.sb", "train.eval")
_ALGORITHM = {JobKind.TRAIN_RISK: "lr", JobKind.TRAIN_PROPENSITY: "secureboost"}
_ONE_INPUT = "job {job} has {count} inputs on this node; training takes exactly one"


class TrainingNodeSettings(BaseSettings):
    """A node's training-plane settings, read from ``<node prefix>TRAINING_*`` (e.g. ``TANDEM_BANK_TRAINING_``).

    Attributes:
        flower_port: loopback port of the round endpoint (0: any free port).
        superlink: ``host:port`` of the coordinator's SuperLink; with ``superlink_ca`` and
            ``supernode_key`` set, ``serve`` starts this node's SuperNode.
        superlink_ca: CA certificate of the SuperLink.
        supernode_key: this node's SuperNode EC private key (OpenSSH PEM); its public half must be
            registered at the coordinator under the party name. Whoever holds it can act as this
            party's SuperNode.
        poll_interval: SuperNode poll cap in seconds (Flower's stock idle sleep is 3 s).
        wait_timeout: longest wait for one step (alignment, a round, a peer message), seconds.
        idle_timeout: fail a job when no round or peer message arrived for this long, seconds.
        allow_insecure_test_key: accept Paillier keys under 2048 bits. Tests only: such keys can be
            factored, which reveals every encrypted value.
    """

    model_config = SettingsConfigDict(extra="ignore")

    flower_port: int = Field(default=0, ge=0, le=65535, description=(
        "loopback port of the round endpoint the ClientApp shim posts to (0: any free port; token-guarded)"))
    superlink: str | None = Field(default=None, description=(
        "host:port of the coordinator's SuperLink; with SUPERLINK_CA and SUPERNODE_KEY, serve starts the SuperNode"))
    superlink_ca: Path | None = Field(default=None, description="CA certificate of the SuperLink")
    supernode_key: Path | None = Field(default=None, description=(
        "this node's SuperNode EC private key (OpenSSH PEM); its public half is registered at the coordinator"))
    poll_interval: float = Field(default=0.1, ge=0.01, le=60.0, description="SuperNode poll cap, seconds")
    wait_timeout: float = Field(default=600.0, gt=0.0, description=(
        "longest wait for one training step (alignment, a round, a peer message), seconds"))
    idle_timeout: float = Field(default=900.0, gt=0.0, description=(
        "fail a training job when no round or peer message arrived for this long, seconds"))
    allow_insecure_test_key: bool = Field(default=False, description=(
        "accept Paillier keys under 2048 bits: tests only, such keys can be factored"))


@dataclass
class _Running:
    job: PartyJob
    sender: AlignmentSender | None
    peer: str | None = None
    """The job's signed counterparty: the only party whose data-plane frames reach the job."""
    attempt: int | None = None
    """The job's attempt running here: rounds must name it (None: any, for callers outside the runner)."""


class TrainingService:
    """Registry of running training jobs plus the endpoints that feed them (see the module docstring)."""

    def __init__(self, settings: TrainingNodeSettings | None = None) -> None:
        """``settings`` None: read them from the environment when ``serve`` starts."""
        self.settings = settings
        self._jobs: dict[int, _Running] = {}
        self._cond = threading.Condition()
        self.flower_url: str | None = None

    # ------------------------------------------------------------------ registry

    def _register(self, job_id: int, running: _Running) -> None:
        with self._cond:
            self._jobs[job_id] = running
            self._cond.notify_all()

    def _unregister(self, job_id: int, running: _Running | None = None) -> None:
        """Drop ``job_id`` (only if ``running`` is still the one registered, when given)."""
        with self._cond:
            if running is None or self._jobs.get(job_id) is running:
                self._jobs.pop(job_id, None)

    def running(self, job_id: int, timeout: float = 0.0) -> _Running:
        """The running job ``job_id``, waiting up to ``timeout`` seconds for its handler to register it.

        Raises:
            ProtocolError: (409) the job is not running here (yet).
        """
        with self._cond:
            self._cond.wait_for(lambda: job_id in self._jobs, timeout)
            running = self._jobs.get(job_id)
        if running is None:
            raise ProtocolError(f"training job {job_id} is not running on this node (yet)", status_hint=409)
        return running

    def running_attempt(self, job_id: int, attempt: int | None, timeout: float = 0.0) -> _Running:
        """The running job ``job_id`` if ``attempt`` is the attempt running here (see the module docstring).

        Waits up to ``timeout`` seconds for the job, or for a newer ``attempt`` than the registered one, to
        be registered; a registered older attempt is stopped (the coordinator retried the job) as soon as a
        round of a newer one arrives.

        Raises:
            ProtocolError: 410 if ``attempt`` is older than the attempt running here (a stale run's
                round); 409 if the job, or that attempt of it, is not running here (yet); 400 if
                ``attempt`` is None for a job running with an attempt.
        """
        def ready() -> bool:
            registered = self._jobs.get(job_id)
            if registered is None:
                return False
            if attempt is not None and registered.attempt is not None and registered.attempt < attempt:
                registered.job.fail(TrainingError(f"the job was retried (a round of attempt {attempt} arrived); "
                                                  f"attempt {registered.attempt} stops here"))
                return False
            return True

        with self._cond:
            self._cond.wait_for(ready, timeout)
            running = self._jobs.get(job_id)
        if running is None:
            raise ProtocolError(f"training job {job_id} is not running on this node (yet)", status_hint=409)
        current = running.attempt
        if current is None or attempt == current:
            return running
        if attempt is None:
            raise ProtocolError(f"training job {job_id} runs attempt {current} on this node and the round names no "
                                f"attempt; send the {H_ATTEMPT} header", status_hint=400)
        if attempt > current:
            raise ProtocolError(f"training job {job_id} runs attempt {current} on this node, not attempt {attempt} "
                                "(yet)", status_hint=409)
        logger.warning("job %s: refused a Flower round of stale attempt %d (attempt %d runs here)",
                       job_id, attempt, current)
        raise ProtocolError(f"training job {job_id} was retried: this node runs attempt {current}, the round is of "
                            f"attempt {attempt}; a stale attempt's round is refused, stop that run", status_hint=410)

    # ------------------------------------------------------------------ data plane

    def on_peer(self, message: PeerMessage) -> bytes:
        """Inbox handler of every ``train.*`` channel."""
        running = self.running(message.job_id)
        if running.peer is not None and message.sender != running.peer:  # before the job sees it, so it goes on
            raise ProtocolError(f"party {message.sender} is not the counterparty of training job {message.job_id}; "
                                "frame refused", status_hint=403)
        if message.channel in PSI_CHANNELS.values():
            if running.sender is None:
                raise ProtocolError("this node is not the alignment sender of the job", status_hint=409)
            return running.sender.on_message(message)
        return running.job.on_peer(message)

    # ------------------------------------------------------------------ handlers

    def handlers(self) -> dict[JobKind, JobHandler]:
        """Job handlers for both training kinds."""
        return {JobKind.TRAIN_RISK: self.run_job, JobKind.TRAIN_PROPENSITY: self.run_job}

    def run_job(self, ctx: JobContext) -> dict[str, Any]:
        """Train this party's part of ``ctx.job``; return the outputs reported to the coordinator."""
        if self.settings is None or self.flower_url is None:
            raise TrainingError("training jobs run only under `serve` (the Flower round endpoint is not up)")
        settings = self.settings
        inp = ctx.own_input(refusal=_ONE_INPUT, error=TrainingError)
        ctx.progress("train.load", 0.0)
        data = _read(ctx, inp)
        peer_party = ctx.peer_party(error=TrainingError)
        active = inp.label_field is not None
        job = make_party_job(self._spec(ctx, inp, data, peer_party, settings), active=active)
        sender = None if active else AlignmentSender(ctx.job.id, data.key_type, data.keys)
        registered = _Running(job, sender, peer_party, ctx.job.attempt)
        self._register(ctx.job.id, registered)
        try:
            ctx.progress("train.align", 0.05)
            if sender is None:
                job.set_aligned(align_as_receiver(ctx.peer(peer_party), ctx.job.id, data.key_type, data.keys,
                                                  ready_timeout=settings.wait_timeout,
                                                  still_running=ctx.check_current))
            else:
                job.set_aligned(_wait_aligned(ctx, sender, settings.wait_timeout))
            self._await(ctx, job, settings)
        except BaseException as exc:
            job.fail(exc)
            raise
        finally:
            self._unregister(ctx.job.id, registered)
        return {**job.outputs, "figures": [f"jobs/{ctx.job.id}/{n}" for n in ("roc.png", "ks.png")] if active else []}

    def _spec(self, ctx: JobContext, inp: JobInput, data: PartyData, peer_party: str,
              settings: TrainingNodeSettings) -> JobSpec:
        store = _Store(ctx, inp, data, peer_party)
        return JobSpec(
            job_id=ctx.job.id, job_digest=lineage_digest(ctx.job), party=ctx.settings.party,
            algorithm=_ALGORITHM[ctx.job.kind], data=data, peer=lambda: ctx.peer(peer_party),
            allow_insecure_test_key=settings.allow_insecure_test_key, wait_timeout=settings.wait_timeout,
            store=store, figures_dir=ctx.workdir,
            checkpoint_dir=checkpoint_dir(ctx.settings.state_path, ctx.job.id)
            if ctx.job.kind == JobKind.TRAIN_RISK else None,
        )

    def _await(self, ctx: JobContext, job: PartyJob, settings: TrainingNodeSettings) -> None:
        """Wait for the job to finish; fail it when the coordinator ended it or nothing happens."""
        expected = _expected_rounds(ctx)
        reported, last_check = -1, 0.0
        while not job.finished.wait(0.5):
            if job.rounds != reported:
                reported = job.rounds
                ctx.progress(f"train.round.{job.rounds}", min(0.95, 0.1 + 0.85 * job.rounds / expected))
            if time.monotonic() - last_check > 2.0:
                last_check = time.monotonic()
                ctx.check_current()
            if time.monotonic() - job.last_activity > settings.idle_timeout:
                raise TrainingError(f"no training round or peer message for {settings.idle_timeout:.0f} s")
        if job.error is not None:
            if isinstance(job.error, ProtocolError):
                raise job.error
            raise TrainingError(f"{type(job.error).__name__} during training (see node log)") from job.error

    # ------------------------------------------------------------------ serve

    @contextlib.contextmanager
    def serve(self, rt: NodeRuntime) -> Iterator[TrainingService]:
        """NodeService: the round endpoint, the train.* channels and (if configured) the SuperNode."""
        if self.settings is None:
            prefix = str(type(rt.settings).model_config.get("env_prefix", ""))
            self.settings = TrainingNodeSettings(_env_prefix=f"{prefix}TRAINING_")  # type: ignore[call-arg]
        for channel in CHANNELS:
            rt.inbox.register_handler(channel, self.on_peer)
        token = secrets.token_urlsafe(32)
        server = _round_server(self, rt.settings.party, self.settings.flower_port, rt.ledger, token)
        threading.Thread(target=server.serve_forever, name="flower-rounds", daemon=True).start()
        self.flower_url = f"http://127.0.0.1:{server.server_address[1]}"
        logger.info("training round endpoint on %s", self.flower_url)
        try:
            with _supernode(self.settings, rt, self.flower_url, token):
                yield self
        finally:
            server.shutdown()
            server.server_close()
            self.flower_url = None


@contextlib.contextmanager
def _supernode(settings: TrainingNodeSettings, rt: NodeRuntime, service_url: str, token: str) -> Iterator[None]:
    """Run the node's SuperNode, kept running by :mod:`node.flower.supernode_keeper` (a process of its own).

    The round ``token`` goes to the keeper in its environment, never on its command line.
    """
    if not (settings.superlink and settings.superlink_ca and settings.supernode_key):
        yield
        return
    from node.flower.supernode_keeper import command
    from protocols.flower_processes import die_with_parent
    from protocols.wire.flower_round import ROUND_TOKEN_ENV

    args = command(rt.settings.party, rt.settings.state_path / "flower", service_url, settings.superlink,
                   settings.superlink_ca, settings.supernode_key, settings.poll_interval)
    keeper = subprocess.Popen([sys.executable, "-m", "node.flower.supernode_keeper", *args],  # noqa: S603
                              stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(),
                              env={**os.environ, ROUND_TOKEN_ENV: token})
    logger.info("SuperNode keeper started for %s against %s", rt.settings.party, settings.superlink)
    try:
        yield
    finally:
        keeper.terminate()
        try:
            keeper.wait(timeout=60)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait(timeout=10)


def _round_server(service: TrainingService, party: str, port: int, ledger: EgressLedger,
                  token: str) -> ThreadingHTTPServer:
    """The loopback round endpoint; a POST must carry ``token`` in ``X-Tandem-Round-Token``.

    Its replies leave the node (the SuperNode relays them to the coordinator's SuperLink), so each is
    recorded in the egress ledger before it is returned. A POST without the token is refused with 401
    before its body is read: it reaches no job, and its refusal (which goes back to the local caller
    only) is logged, not ledgered.
    """
    from protocols.wire.flower_round import HEADER_ROUND_TOKEN

    expected = token.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            if not hmac.compare_digest(self.headers.get(HEADER_ROUND_TOKEN, "").encode(), expected):
                logger.warning("round endpoint: refused a POST without the round token")
                self._answer(401, f"header {HEADER_ROUND_TOKEN} must carry this node's round token".encode())
                return
            headers = dict(self.headers)
            status, body = _answer_round(service, party, self.path, headers,
                                         self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            _record_reply(ledger, headers, status, body)
            self._answer(status, body)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet: the runner logs job steps."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def _record_reply(ledger: EgressLedger, headers: dict[str, str], status: int, body: bytes) -> None:
    from protocols.wire.flower_round import HEADER_ROUND, HEADER_RUN_ID

    ledger.record(peer=COORDINATOR_PEER, kind="flower.round_reply" if status == 200 else "flower.round_error",
                  payload=body, job_id=_job_id(headers),
                  ref=f"flower/run/{headers.get(HEADER_RUN_ID, '?')}/round/{headers.get(HEADER_ROUND, '?')}")


def _answer_round(service: TrainingService, party: str, path: str, headers: dict[str, str],
                  body: bytes) -> tuple[int, bytes]:
    """``(status, body)`` for one POST of the ClientApp shim."""
    from protocols.wire.flower_round import HEADER_JOB_ID, HEADER_PARTY, HEADER_RUN_ID

    if not path.startswith("/flower/v1/"):
        return 404, b"not found"
    if headers.get(HEADER_PARTY) != party:
        return 403, f"this node serves party {party}".encode()
    job_id = _job_id(headers)
    if job_id is None:
        return 400, f"bad {HEADER_JOB_ID} header: a job id (ASCII digits) is expected".encode()
    try:
        attempt = parse_attempt(_header(headers, H_ATTEMPT))
        running = service.running_attempt(job_id, attempt, timeout=120.0)
        return 200, running.job.on_round(body, headers.get(HEADER_RUN_ID))
    except ProtocolError as exc:
        return exc.status_hint if exc.status_hint >= 400 else 500, str(exc).encode()[:2000]
    except Exception as exc:  # noqa: BLE001 - the shim turns any failure into a failed round
        logger.exception("training round failed")
        return 500, f"{type(exc).__name__} in the training round (see node log)".encode()


# ---------------------------------------------------------------------- helpers


def _job_id(headers: dict[str, str]) -> int | None:
    """The round's job id: ASCII digits only, at most 12 (``'²'``, ``' 7 '``, ``'0_7'`` and 5,000 digits are not)."""
    from protocols.wire.flower_round import HEADER_JOB_ID

    raw = headers.get(HEADER_JOB_ID, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


def _header(headers: dict[str, str], name: str) -> str | None:
    """A header of ``dict(http.server headers)`` by name, whatever its case on the wire."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _wait_aligned(ctx: JobContext, sender: AlignmentSender, timeout: float) -> Aligned:
    """The telco's wait for the bank's alignment, giving up early when the job ended at the coordinator."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sender.wait(min(2.0, max(0.0, deadline - time.monotonic())))
        except TrainingError:
            if time.monotonic() >= deadline:
                raise TrainingError(f"row alignment did not complete within {timeout:.0f} s") from None
            ctx.check_current()


def _read(ctx: JobContext, inp: JobInput) -> PartyData:
    source, governance = ctx.open_dataset(inp.dataset_id)
    label = [inp.label_field] if inp.label_field else []
    columns = list(dict.fromkeys([*inp.key_fields, *inp.feature_fields, *label]))
    missing = [c for c in columns if c not in source.columns]
    if missing:
        source.close()
        raise TrainingError(f"columns {missing} are missing from the dataset")
    with source:
        frame = source.read(columns)
    return read_party_data(frame, governance, inp)


def _expected_rounds(ctx: JobContext) -> int:
    params = ctx.job.params
    if ctx.job.kind == JobKind.TRAIN_RISK:
        return (params.iterations or DEFAULT_LR_ITERATIONS) + 2
    return -(-(params.trees or 10) // 5) + 2


class _Store:
    """Writes this party's model part and card through the node's ModelStore."""

    def __init__(self, ctx: JobContext, inp: JobInput, data: PartyData, peer_party: str) -> None:
        self.ctx, self.inp, self.data, self.peer_party = ctx, inp, data, peer_party

    def __call__(self, metrics: dict[str, float], part: BaseModel, extra: dict[str, Any]) -> None:
        ctx, inp = self.ctx, self.inp
        _, governance = ctx.open_dataset(inp.dataset_id)
        columns = [FeatureColumn(name=n, type=_feature_type(governance.fields[n].type)) for n in inp.feature_fields]
        active = inp.label_field is not None
        fallback = extra.get("fallback")
        algo: Literal["hetero_lr", "secureboost"] = (
            "hetero_lr" if ctx.job.kind == JobKind.TRAIN_RISK else "secureboost")
        card = ModelCard(
            job_id=ctx.job.id, kind=ctx.job.kind, algo=algo, party=ctx.settings.party, peer_party=self.peer_party,
            role="active" if active else "passive", features=columns, label=inp.label_field,
            metrics=ModelMetrics(auc=metrics.get("auc_federated"), ks=metrics.get("ks_federated"),
                                 bank_only_auc=metrics.get("auc_bank_only"),
                                 n_train=int(metrics.get("n_train", 0)), n_test=int(metrics.get("n_test", 0))),
            data=DataDigests(keys_sha256=str(extra["keys_sha256"]),
                             dataset_schema_digest=ctx.coordinator.dataset(inp.dataset_id).schema_digest,
                             dataset_id=inp.dataset_id),
            policy_version=ctx.job.policy_version,
            fallback=FallbackModel(algo="hetero_lr", features=columns, auc=extra.get("fallback_auc"))
            if fallback is not None else None,
        )
        body = part.model_dump(mode="json")
        if fallback is not None:
            body["fallback"] = fallback.model_dump(mode="json")
        ModelStore(ctx.settings.state_path).save(card, body, replace=True)


def _feature_type(value: Any) -> Any:
    text = str(getattr(value, "value", value))
    return text if text in {"string", "integer", "float", "boolean", "date"} else "float"
