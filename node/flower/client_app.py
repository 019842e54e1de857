"""Tandem's Flower ClientApp: a thin shim in front of the party's long-running node service.

Flower starts a fresh process per message, so nothing here holds keys or state. For each
``query.tandem_round`` message the shim POSTs the payload bytes to
``{service-url}/flower/v1/{run_id}/{round}`` (``service-url`` comes from the SuperNode's node
config) and replies with the exact bytes the service answered. The job id and party travel as
headers; the service must check them against the job it approved before touching data. The job
attempt the run belongs to (the instruction's ``attempt``) travels in the data plane's
``X-Tandem-Attempt`` header (:data:`node.peer.H_ATTEMPT`): the service refuses (410) a round of an
attempt older than the one it runs, so a stale run of a retried job fails instead of feeding it. The node's
round token (environment :data:`~protocols.wire.flower_round.ROUND_TOKEN_ENV`, handed to the runner by
the node) travels in :data:`~protocols.wire.flower_round.HEADER_ROUND_TOKEN`: without it the service
refuses the POST, so no other local process can feed rounds to a job. A non-2xx answer makes the
shim raise, which Flower turns into an error reply the ServerApp reports.

Run config ``service-timeout`` (seconds, default 600) bounds one call to the node service.

What each party learns: its own round payload; the node service decides what to answer.
"""

from __future__ import annotations

import os

import httpx
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from node.peer import H_ATTEMPT
from protocols.wire.flower_round import (
    HEADER_JOB_ID,
    HEADER_PARTY,
    HEADER_ROUND,
    HEADER_ROUND_TOKEN,
    HEADER_RUN_ID,
    NODE_CONFIG_PARTY,
    NODE_CONFIG_SERVICE_URL,
    ROUND_ACTION,
    ROUND_TOKEN_ENV,
    read_instruction,
    reply_content,
    service_round_url,
)

DEFAULT_SERVICE_TIMEOUT = 600.0


class ShimError(RuntimeError):
    """The node config is incomplete or the node service refused the round."""


def _node_setting(context: Context, key: str) -> str:
    value = context.node_config.get(key)
    if not isinstance(value, str) or not value:
        raise ShimError(f"SuperNode node config lacks '{key}'")
    return value


def forward_round(message: Message, context: Context) -> bytes:
    """POST the round payload to the node service and return its answer bytes.

    Raises:
        ShimError: The instruction is for another party, or the service answered non-2xx.
    """
    instruction = read_instruction(message.content)
    party = _node_setting(context, NODE_CONFIG_PARTY)
    if instruction.party != party:
        raise ShimError(f"instruction for {instruction.party!r} reached the {party!r} node")
    url = service_round_url(_node_setting(context, NODE_CONFIG_SERVICE_URL), context.run_id, instruction.round)
    headers = {
        HEADER_JOB_ID: instruction.job_id,
        HEADER_PARTY: party,
        HEADER_RUN_ID: str(context.run_id),
        HEADER_ROUND: str(instruction.round),
        HEADER_ROUND_TOKEN: os.environ.get(ROUND_TOKEN_ENV, ""),
        "Content-Type": "application/octet-stream",
    }
    if instruction.attempt is not None:
        headers[H_ATTEMPT] = str(instruction.attempt)
    timeout = float(context.run_config.get("service-timeout", DEFAULT_SERVICE_TIMEOUT))
    response = httpx.post(url, content=instruction.payload, headers=headers, timeout=timeout)
    if response.status_code // 100 != 2:
        raise ShimError(f"node service answered {response.status_code}: {response.text[:500]}")
    return response.content


app = ClientApp()


@app.query(ROUND_ACTION)
def tandem_round(message: Message, context: Context) -> Message:
    """Hand one round to the node service and return what it answered."""
    return Message(reply_content(forward_round(message, context)), reply_to=message)

