"""Issue 9, attack 2 on the data plane itself: a registered party that is not a job's counterparty.

The rogue holds a certificate pinned at the telco (it is a registered party), so it completes the
mutual-TLS handshake; the telco's job 7 is bound to the bank. Every frame the rogue sends for job 7 —
a whole message, one chunk of a larger one, a status query — is refused with 403 before anything of it
is kept or a handler runs; the refusals are counted and kept for the operator, and the bank's exchange
of the same message number goes through untouched.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest

from node.peer import PeerError, PeerMessage
from tests.node.peer.conftest import CHUNK

JOB = 7


def test_a_strangers_frames_are_refused_recorded_and_leave_the_job_alone(make_nodes: Any,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    bank, telco, rogue = make_nodes()
    calls: list[PeerMessage] = []
    telco.inbox.register_handler("echo", lambda m: calls.append(m) or m.body.upper())
    telco.inbox.activate(JOB, peer="bank")
    big = b"garbage!" * 500  # 4000 bytes: four chunks
    caplog.set_level(logging.WARNING, logger="node.peer._inbox")

    with rogue.client_to(telco) as client:
        with pytest.raises(PeerError) as whole:
            client.exchange(JOB, "echo", 1, big)  # asks for status first, then would post chunks
        with pytest.raises(PeerError) as chunk:
            client._post_chunk(JOB, "echo", 1, "data", 0, 4, hashlib.sha256(big).hexdigest(), big[:CHUNK])

    assert whole.value.http_status == chunk.value.http_status == 403
    assert "not the counterparty of job 7" in str(chunk.value) and "bank" not in str(chunk.value)
    assert calls == [] and telco.inbox.pending_bytes() == 0 and telco.inbox.pending_messages() == 0
    assert telco.inbox.refused == 2
    refusals = [(r.job_id, r.sender, r.peer, r.channel) for r in telco.inbox.refusals()]
    assert refusals == [(JOB, "rogue", "bank", "echo")] * 2
    assert "refused a frame on echo from party rogue: the job's signed peer is bank" in caplog.text

    with bank.client_to(telco) as client:
        assert client.exchange(JOB, "echo", 1, b"hello " * 300) == b"HELLO " * 300
    assert [(m.sender, m.seq) for m in calls] == [("bank", 1)]
    assert telco.inbox.refused == 2

