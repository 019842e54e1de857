"""Issue 9, attack 9: a peer opens many messages and never finishes them, to make the receiver hold memory.

The issue's run had 150 partial 1 MiB messages accepted for one job (+152 MiB resident). Here the same
attack, scaled to 1 KiB chunks, goes through the real mutual-TLS server: the job's own peer starts 20
messages of 4 chunks and sends only the first chunk of each. The inbox holds at most
``max_pending_messages`` incomplete messages and ``max_pending_bytes`` bytes for that sender and job,
answers 429 naming the limit past it, and keeps nothing of a refused chunk; what it holds is read from
its own byte count, not from the process's memory.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pydantic import ValidationError

from node.peer import PeerClient, PeerError
from node.settings import NodeSettings
from tests.node.peer.conftest import CHUNK

JOB = 5
BODY = bytes(range(256)) * 16  # 4096 bytes: four chunks
DIGEST = hashlib.sha256(BODY).hexdigest()


def _start_messages(client: PeerClient, count: int) -> list[int | None]:
    """Send the first chunk of messages 1..count; the HTTP status of each refusal (None: accepted)."""
    statuses: list[int | None] = []
    for seq in range(1, count + 1):
        try:
            client._post_chunk(JOB, "echo", seq, "data", 0, 4, DIGEST, BODY[:CHUNK])
            statuses.append(None)
        except PeerError as exc:
            statuses.append(exc.http_status)
    return statuses


def test_incomplete_messages_per_sender_and_job_are_capped(make_nodes: Any) -> None:
    bank, telco, _ = make_nodes(max_pending_messages=8, max_pending_bytes=1 << 20)
    telco.inbox.register_handler("echo", lambda m: m.body[:4])
    telco.inbox.activate(JOB, peer="bank")

    with bank.client_to(telco) as client:
        statuses = _start_messages(client, 20)
        print(f"accepted {statuses.count(None)} of 20 partial messages; held "
              f"{telco.inbox.pending_bytes(sender='bank', job_id=JOB)} bytes")
        with pytest.raises(PeerError, match=r"HTTP 429: party bank already has 8 incomplete messages for job 5 "
                                            r"here \(max_pending_messages=8\)"):
            client._post_chunk(JOB, "echo", 99, "data", 0, 4, DIGEST, BODY[:CHUNK])

        assert statuses == [None] * 8 + [429] * 12
        assert telco.inbox.pending_messages(sender="bank", job_id=JOB) == 8
        assert telco.inbox.pending_bytes(sender="bank", job_id=JOB) == 8 * CHUNK

        # finishing a message frees its slot, and the peer can go on
        assert client.exchange(JOB, "echo", 1, BODY) == BODY[:4]
        assert telco.inbox.pending_messages(sender="bank", job_id=JOB) == 7
        assert _start_messages(client, 9)[-1] is None

    telco.inbox.deactivate(JOB)
    assert telco.inbox.pending_bytes() == 0 and telco.inbox.pending_messages() == 0


def test_bytes_in_flight_per_sender_and_job_are_capped(make_nodes: Any) -> None:
    bank, telco, _ = make_nodes(max_pending_messages=100, max_message_bytes=4 * CHUNK, max_pending_bytes=6 * CHUNK)
    telco.inbox.register_handler("echo", lambda m: b"ok")
    telco.inbox.activate(JOB, peer="bank")

    with bank.client_to(telco) as client:
        statuses = _start_messages(client, 20)
        print(f"accepted {statuses.count(None)} of 20 partial messages; held "
              f"{telco.inbox.pending_bytes(sender='bank', job_id=JOB)} bytes (cap {6 * CHUNK})")
        with pytest.raises(PeerError, match=r"HTTP 429: party bank would hold 7168 bytes of incomplete messages "
                                            r"for job 5 here \(max_pending_bytes=6144\)"):
            client._post_chunk(JOB, "echo", 1, "data", 1, 4, DIGEST, BODY[CHUNK : 2 * CHUNK])

    assert statuses == [None] * 6 + [429] * 14
    assert telco.inbox.pending_bytes(sender="bank", job_id=JOB) == 6 * CHUNK
    assert telco.inbox.pending_messages(sender="bank", job_id=JOB) == 6  # refused first chunks hold no slot
    assert telco.inbox.status(("bank", JOB, "echo", 1)) == {"complete": False, "received": [0]}


def test_node_settings_default_to_bounded_in_flight_data_and_refuse_a_cap_below_one_message() -> None:
    settings = NodeSettings(party="telco", kind="telco", api_token="t0k3n-for-tests")
    assert (settings.max_pending_messages, settings.max_pending_bytes, settings.max_message_bytes) == (
        8, 256 * 1024 * 1024, 256 * 1024 * 1024)
    with pytest.raises(ValidationError, match="max_pending_bytes .* must be at least max_message_bytes"):
        NodeSettings(party="telco", kind="telco", api_token="t0k3n-for-tests", max_pending_bytes=1 << 20)
