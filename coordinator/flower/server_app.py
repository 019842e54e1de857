"""Tandem's Flower ServerApp: the coordinator-side arbiter loop of one training job.

Started by the SuperLink (``flwr run`` of ``coordinator/flower/app``) in its own process. It reads
its run config (see ``coordinator/flower/app/pyproject.toml``), maps the parties to SuperNodes,
builds the job's :class:`~coordinator.flower.arbiter.Arbiter` from the ``arbiter`` import path, and
runs rounds: per round, one ``query.tandem_round`` message per addressed party, then it waits for
all replies and hands them to the arbiter. At the end it POSTs the arbiter's result (or the
failure) to ``report-url`` when one is set.

Parties are mapped to nodes only by the name the coordinator registered each SuperNode's public key
under (the SuperLink always runs with SuperNode authentication, and only the coordinator can register:
:mod:`coordinator.flower.control_gate`). A node's own claim is never asked for; two SuperNodes under
one party name fail the run.

The report to ``report-url`` carries the launcher's report token, read from this process's
environment (:data:`~protocols.wire.flower_round.REPORT_TOKEN_ENV`, set on the SuperLink by the
launcher), never from the run config, which the SuperLink hands to every SuperNode.

Polling: Flower's ``Grid.send_and_receive`` sleeps 3 s between pulls; this loop pulls every
``grid-poll-interval`` seconds instead (0.1 s by default). A SuperNode that restarts (its node was killed,
its link cut) is reported unavailable by the SuperLink meanwhile, which then drops the round's message to
it; the round sends the message again every few seconds and waits for the node up to ``nodes-timeout``
seconds, then fails naming the party.

What each party learns: only its own payloads. The coordinator (this process) learns every reply.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from flwr.app import Context, Message
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid, ServerApp

from coordinator.flower.arbiter import ArbiterContext, Payloads, build_arbiter, run_rounds
from protocols.wire.flower_round import (
    HEADER_JOB_ID,
    HEADER_REPORT_TOKEN,
    HEADER_RUN_ID,
    REPORT_TOKEN_ENV,
    ROUND_MESSAGE_TYPE,
    Instruction,
    instruction_content,
    read_reply,
)

LOG = logging.getLogger("flwr.tandem")  # a child of Flower's logger, so `flwr log` shows it


class RoundFailedError(RuntimeError):
    """A party's ClientApp or node service failed a round, or a round timed out."""


@dataclass(frozen=True)
class RunSettings:
    """The ServerApp's run config, typed."""

    arbiter: str
    job_id: str
    parties: tuple[str, ...]
    arbiter_config: Mapping[str, Any]
    coordinator_url: str
    report_url: str
    round_timeout: float
    nodes_timeout: float
    grid_poll_interval: float
    max_rounds: int
    attempt: int | None = None
    """The coordinator job's attempt (run config ``attempt``; 0 or absent: a run outside a coordinator job).

    Every instruction carries it, so a party's node refuses this run's rounds once the job was retried."""

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> RunSettings:
        """Parse and check the run config.

        Raises:
            ValueError: A required key is missing or a value is out of range.
        """
        arbiter = str(config.get("arbiter", ""))
        if not arbiter:
            raise ValueError("run config 'arbiter' (module:factory) is required")
        parties = tuple(p.strip() for p in str(config.get("parties", "bank,telco")).split(",") if p.strip())
        if len(set(parties)) != len(parties) or not parties:
            raise ValueError(f"run config 'parties' must name distinct parties, got {config.get('parties')!r}")
        raw_arbiter_config = str(config.get("arbiter-config", "") or "{}")
        arbiter_config = json.loads(raw_arbiter_config)
        if not isinstance(arbiter_config, dict):
            raise ValueError("run config 'arbiter-config' must be a JSON object")
        settings = cls(
            arbiter=arbiter,
            job_id=str(config.get("job-id", "")),
            parties=parties,
            arbiter_config=arbiter_config,
            coordinator_url=str(config.get("coordinator-url", "")),
            report_url=str(config.get("report-url", "")),
            round_timeout=float(config.get("round-timeout", 3600.0)),
            nodes_timeout=float(config.get("nodes-timeout", 60.0)),
            grid_poll_interval=float(config.get("grid-poll-interval", 0.1)),
            max_rounds=int(config.get("max-rounds", 100_000)),
            attempt=int(config.get("attempt", 0)) or None,
        )
        if settings.attempt is not None and settings.attempt < 0:
            raise ValueError(f"run config 'attempt' must be a job attempt (>= 1) or 0, got {settings.attempt}")
        if min(settings.round_timeout, settings.nodes_timeout, settings.grid_poll_interval) <= 0:
            raise ValueError("timeouts and grid-poll-interval must be positive")
        return settings


def _node_unavailable(reply: Message) -> bool:
    """The SuperLink's stand-in reply for a message whose SuperNode missed its heartbeats (not the node's answer)."""
    return (reply.metadata.src_node_id == SUPERLINK_NODE_ID and reply.has_error()
            and reply.error.code == ErrorCode.NODE_UNAVAILABLE)


RESEND_AFTER_S = 2.0
"""How long a round waits before sending a message again that the SuperLink dropped for an unavailable node."""


def _await_replies(grid: Grid, message_ids: list[str], timeout: float, poll: float, what: str,
                   patience: float = 60.0, addressed: dict[str, str] | None = None,
                   resend: Callable[[str], str] | None = None) -> list[Message]:
    """Pull replies to ``message_ids`` until all arrived; raise RoundFailedError after ``timeout``.

    A SuperNode that restarts (its node was killed, its link was down) is reported unavailable by the
    SuperLink until it is back, with a stand-in reply; that is not the party's answer. The SuperLink
    deletes an instruction once it has handed out any reply to it, the stand-in included, so the round
    sends the message again (``resend``: old message id -> new one, same content and node) every
    :data:`RESEND_AFTER_S` seconds while the node is away, for up to ``patience`` seconds, then fails
    naming the party (``addressed``: message id -> party, kept up to date with the new ids).
    """
    pending = set(message_ids)
    addressed = addressed if addressed is not None else {}
    parked: dict[str, float] = {}  # dropped message id -> when to send it again
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    unavailable_since: float | None = None
    while pending or parked:
        for old, due in list(parked.items()):
            if time.monotonic() >= due and resend is not None:
                del parked[old]
                new = resend(old)
                pending.add(new)
                addressed[new] = addressed.get(old, "a party")
        for reply in grid.pull_messages(list(pending)) if pending else []:
            if _node_unavailable(reply):
                dropped = reply.metadata.reply_to_message_id
                unavailable_since = unavailable_since if unavailable_since is not None else time.monotonic()
                if time.monotonic() - unavailable_since > patience or resend is None:
                    party = addressed.get(dropped, "a party")
                    raise RoundFailedError(f"{what}: {party}'s SuperNode has been unavailable for more than "
                                           f"{patience:.0f} s ({reply.error.reason})")
                pending.discard(dropped)
                parked[dropped] = time.monotonic() + RESEND_AFTER_S
                continue
            pending.discard(reply.metadata.reply_to_message_id)
            replies.append(reply)
        if not pending and not parked:
            break
        if time.monotonic() > deadline:
            raise RoundFailedError(f"{what}: no reply to {len(pending) + len(parked)} message(s) within "
                                   f"{timeout:.0f} s")
        time.sleep(poll)
    return replies


def _push(grid: Grid, messages: list[Message], what: str) -> list[str]:
    ids = [i for i in grid.push_messages(messages) if i]
    if len(ids) != len(messages):
        raise RoundFailedError(f"{what}: the SuperLink accepted {len(ids)} of {len(messages)} messages")
    return ids


class GridExchange:
    """Delivers one round's payloads through the Flower Grid and collects the replies."""

    def __init__(self, grid: Grid, nodes: Mapping[str, int], settings: RunSettings) -> None:
        self._grid = grid
        self._nodes = dict(nodes)
        self._party_of = {node_id: party for party, node_id in nodes.items()}
        self._settings = settings
        self.seconds: list[float] = []
        self.bytes_to: dict[str, int] = dict.fromkeys(nodes, 0)
        """Payload bytes relayed to each party (the arbiter's instructions), summed over rounds."""
        self.bytes_from: dict[str, int] = dict.fromkeys(nodes, 0)
        """Payload bytes relayed from each party (its replies), summed over rounds."""

    def __call__(self, round_: int, payloads: Payloads) -> Payloads:
        """Send ``payloads`` for round ``round_`` and return each addressed party's reply."""
        started = time.perf_counter()
        what = f"job {self._settings.job_id} round {round_}"
        def message(party: str) -> Message:
            return Message(
                content=instruction_content(Instruction(self._settings.job_id, party, round_, payloads[party],
                                                         attempt=self._settings.attempt)),
                dst_node_id=self._nodes[party],
                message_type=ROUND_MESSAGE_TYPE,
                group_id=str(round_),
                ttl=self._settings.round_timeout,
            )

        ids = _push(self._grid, [message(party) for party in payloads], what)
        for addressed, payload in payloads.items():
            self.bytes_to[addressed] += len(payload)
        replies: Payloads = {}
        addressed = dict(zip(ids, payloads, strict=True))

        def resend(old: str) -> str:  # the SuperLink dropped it for an unavailable node: the same again
            party = addressed[old]
            LOG.info("%s: %s's SuperNode is unavailable; sending its message again", what, party)
            return _push(self._grid, [message(party)], what)[0]

        for reply in _await_replies(
            self._grid, ids, self._settings.round_timeout, self._settings.grid_poll_interval, what,
            patience=self._settings.nodes_timeout, addressed=addressed, resend=resend,
        ):
            if reply.metadata.src_node_id == SUPERLINK_NODE_ID and reply.has_error():  # a stand-in, not an answer
                party = addressed.get(reply.metadata.reply_to_message_id, "a party")
                raise RoundFailedError(f"{what}: the SuperLink answered for {party}'s SuperNode with error "
                                       f"{reply.error.code}: {reply.error.reason}")
            party = self._party_of.get(reply.metadata.src_node_id)
            if party is None:
                raise RoundFailedError(f"{what}: reply from unknown node {reply.metadata.src_node_id}")
            if reply.has_error():
                raise RoundFailedError(f"{what}: {party} failed: {reply.error.reason}")
            replies[party] = read_reply(reply.content)
            self.bytes_from[party] += len(replies[party])
        self.seconds.append(time.perf_counter() - started)
        LOG.info("%s: %d replies in %.3f s", what, len(replies), self.seconds[-1])
        return replies


def _named_nodes(grid: Grid, parties: Iterable[str]) -> dict[str, int]:
    """Return {party: node_id} for the nodes registered under a party name.

    Raises:
        RoundFailedError: Two SuperNodes are registered under one party name.
    """
    wanted = set(parties)
    named: dict[str, int] = {}
    for info in grid.get_nodes():
        name = getattr(info, "name", "")
        if name in wanted:
            if name in named:
                raise RoundFailedError(f"two SuperNodes are registered as {name!r}")
            named[name] = int(info.node_id)
    return named


def resolve_parties(grid: Grid, settings: RunSettings) -> dict[str, int]:
    """Wait until every party has a SuperNode online under its registered name and return {party: node_id}.

    Raises:
        RoundFailedError: Not all parties appeared within ``nodes-timeout``, or a name is taken twice.
    """
    deadline = time.monotonic() + settings.nodes_timeout
    while True:
        named = _named_nodes(grid, settings.parties)
        if len(named) == len(settings.parties):
            return named
        if time.monotonic() > deadline:
            raise RoundFailedError(
                f"parties {sorted(set(settings.parties) - set(named))} have no SuperNode online "
                f"after {settings.nodes_timeout:.0f} s"
            )
        time.sleep(max(settings.grid_poll_interval, 0.5))


def _report(settings: RunSettings, run_id: int, status: str, body: bytes, rounds: int) -> None:
    if not settings.report_url:
        return
    headers = {
        HEADER_JOB_ID: settings.job_id,
        HEADER_RUN_ID: str(run_id),
        HEADER_REPORT_TOKEN: os.environ.get(REPORT_TOKEN_ENV, ""),
        "X-Tandem-Status": status,
        "X-Tandem-Rounds": str(rounds),
        "Content-Type": "application/octet-stream",
    }
    response = httpx.post(settings.report_url, content=body, headers=headers, timeout=60.0)
    response.raise_for_status()


def run_job(grid: Grid, context: Context) -> int:
    """Run one job's rounds; return the number of rounds. Reports to ``report-url`` if set."""
    settings = RunSettings.from_run_config(context.run_config)
    run_id = int(context.run_id)
    exchange: GridExchange | None = None
    try:
        nodes = resolve_parties(grid, settings)
        LOG.info("job %s: parties %s", settings.job_id, nodes)
        arbiter = build_arbiter(
            settings.arbiter,
            ArbiterContext(
                job_id=settings.job_id,
                run_id=run_id,
                parties=settings.parties,
                config=settings.arbiter_config,
                coordinator_url=settings.coordinator_url,
            ),
        )
        exchange = GridExchange(grid, nodes, settings)
        outcome = run_rounds(arbiter, exchange, settings.parties, settings.max_rounds)
    except Exception as err:
        done = len(exchange.seconds) if exchange is not None else 0
        try:
            _report(settings, run_id, "failed", f"{type(err).__name__}: {err}".encode(), done)
        except httpx.HTTPError as report_err:
            LOG.error("job %s: could not report the failure: %s", settings.job_id, report_err)
        raise
    _report(settings, run_id, "succeeded", with_relayed_bytes(outcome.result, exchange.bytes_to, exchange.bytes_from),
            outcome.rounds)
    return outcome.rounds


def with_relayed_bytes(result: bytes, to: Mapping[str, int], from_: Mapping[str, int]) -> bytes:
    """The arbiter's JSON result with ``relayed_bytes`` added: round payload bytes to and from each party.

    Counts the payloads the arbiter sent and received (not Flower's message framing or TLS). A
    result that is not a JSON object is returned unchanged.
    """
    try:
        summary = json.loads(result)
    except ValueError:
        return result
    if not isinstance(summary, dict):
        return result
    summary["relayed_bytes"] = {"to": dict(to), "from": dict(from_), "total": sum(to.values()) + sum(from_.values())}
    return json.dumps(summary).encode()


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower entry point: run the job named in the run config."""
    run_job(grid, context)
