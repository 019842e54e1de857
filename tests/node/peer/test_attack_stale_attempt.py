"""Issue 10, item 4: a retried job's stale attempt cannot feed the new attempt, over real mutual TLS.

The telco runs attempt 2 of job 7 (the coordinator retried it); the bank's attempt 1 is still sending
(its process did not notice the retry yet). Every frame of attempt 1 — a whole message, a chunk, a
status query, a response fetch — is refused with 410 before anything of it is kept or a handler runs;
the refusal is counted, logged and kept for the operator, and the stale sender gets a clear error (no
retries) so it gives up. Attempt 2's frames of the same message number go through, and are not
answered from attempt 1's cached responses. A frame of an attempt newer than the one open here is "not
yet" (409, retried by the sender) and tells the inbox's listeners, once, that the attempt open here is
stale; a frame naming no attempt is refused (400).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest

from node.peer import H_ATTEMPT, PeerError, PeerMessage
from tests.node.peer.conftest import CHUNK

JOB = 7


def test_a_stale_attempts_frames_are_refused_recorded_and_leave_the_new_attempt_alone(
        make_nodes: Any, caplog: pytest.LogCaptureFixture) -> None:
    bank, telco, _ = make_nodes()
    calls: list[PeerMessage] = []
    telco.inbox.register_handler("echo", lambda m: calls.append(m) or m.body.upper())
    telco.inbox.activate(JOB, peer="bank", attempt=1)
    with bank.client_to(telco) as client:
        client.bind_attempt(1)
        assert client.exchange(JOB, "echo", 1, b"first attempt") == b"FIRST ATTEMPT"
    telco.inbox.activate(JOB, peer="bank", attempt=2)  # the runner takes attempt 2 of the retried job
    caplog.set_level(logging.WARNING, logger="node.peer._inbox")
    big = b"stale!!!" * 500  # 4000 bytes: four chunks

    with bank.client_to(telco) as stale:
        stale.bind_attempt(1)
        with pytest.raises(PeerError) as whole:
            stale.exchange(JOB, "echo", 2, big)
        with pytest.raises(PeerError) as chunk:
            stale._post_chunk(JOB, "echo", 2, "data", 0, 4, hashlib.sha256(big).hexdigest(), big[:CHUNK])
        with pytest.raises(PeerError) as response:
            stale._response_chunk(JOB, "echo", 1, 0)  # attempt 1's cached answer is gone, and refused anyway

    assert whole.value.http_status == chunk.value.http_status == response.value.http_status == 410
    assert "this node runs attempt 2, the frame is of attempt 1" in str(chunk.value)
    assert len(calls) == 1 and telco.inbox.pending_bytes() == 0 and telco.inbox.pending_messages() == 0
    assert telco.inbox.refused == 3
    assert {(r.job_id, r.sender, r.reason) for r in telco.inbox.refusals()} == {(JOB, "bank", "stale attempt 1 "
                                                                                 "(open: 2)")}
    assert "of stale attempt 1 (attempt 2 runs here)" in caplog.text
    stale_records = [r for r in bank.party.ledger.job_records(JOB) if r.body.get("attempt") == 1]
    assert stale_records, "the stale attempt's frames are in the sender's ledger under their attempt"

    with bank.client_to(telco) as client:
        client.bind_attempt(2)
        assert client.exchange(JOB, "echo", 1, b"second attempt") == b"SECOND ATTEMPT"  # not attempt 1's answer
    assert [(m.seq, m.body) for m in calls] == [(1, b"first attempt"), (1, b"second attempt")]
    answers = [r for r in telco.party.ledger.job_records(JOB) if r.body["kind"] == "data.response"]
    assert [r.body["attempt"] for r in answers] == [1, 2]


def test_a_newer_attempt_is_not_yet_and_a_frame_without_attempt_is_refused(make_nodes: Any) -> None:
    bank, telco, _ = make_nodes()
    telco.inbox.register_handler("echo", lambda m: m.body)
    telco.inbox.activate(JOB, peer="bank", attempt=1)
    stale: list[tuple[int, int]] = []
    telco.inbox.on_superseded(lambda job_id, attempt: stale.append((job_id, attempt)))

    with bank.client_to(telco) as client:
        client.bind_attempt(2)
        with pytest.raises(PeerError) as newer:
            client.exchange(JOB, "echo", 1, b"too early")
        with pytest.raises(PeerError):
            client.exchange(JOB, "echo", 1, b"too early, again")
        client.attempt = None
        with pytest.raises(PeerError) as missing:
            client.exchange(JOB, "echo", 1, b"no attempt")
        bad = client._http.request("GET", f"/jobs/{JOB}/echo/1", headers={H_ATTEMPT: "x"})
        superscript = client._http.request("GET", f"/jobs/{JOB}/echo/1", headers={H_ATTEMPT: b"\xb2"})  # "²".isdigit()

    assert newer.value.http_status == 409 and "not attempt 2 (yet)" in str(newer.value)
    assert stale == [(JOB, 2)]  # told once: attempt 1 here is stale, its driver stops it
    assert missing.value.http_status == 400 and H_ATTEMPT in str(missing.value)
    assert bad.status_code == 400 and "bad X-Tandem-Attempt" in bad.text
    assert superscript.status_code == 400 and "bad X-Tandem-Attempt" in superscript.text  # not a 500
    assert telco.inbox.refused == 0


def test_a_psi_sender_waiting_for_a_stale_attempt_stops_when_the_peer_starts_the_new_one() -> None:
    from node.jobs.psi._sender import EvaluationMeter, Patience, SenderJob, SenderRegistry
    from node.peer import PeerInbox
    from protocols.wire.errors import ProtocolError

    inbox = PeerInbox(max_chunk_bytes=CHUNK, max_message_bytes=1 << 20)
    registry = SenderRegistry()
    registry.attach(inbox)
    inbox.activate(JOB, peer="bank", attempt=1)
    job = SenderJob(str(JOB), {}, meter=EvaluationMeter(None), summarise=lambda sessions, meter: None)  # type: ignore[arg-type,return-value]

    with registry.bound(str(JOB), "bank"), registry.opened(job):
        with pytest.raises(ProtocolError) as newer:
            inbox.admit("bank", JOB, "psi.close", attempt=2)  # the bank's attempt 2 knocks
        with pytest.raises(ProtocolError) as stopped:
            job.wait(Patience(start=600.0, idle=600.0), poll=0.01)  # returns at once, not after 600 s

    assert newer.value.status_hint == 409
    assert "the peer started attempt 2 of this job" in str(stopped.value)
