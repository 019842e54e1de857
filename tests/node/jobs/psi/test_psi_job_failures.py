"""Bad input to the PSI job drivers: every failure names its stage, fails the whole job, keeps nothing."""

from __future__ import annotations

import pytest

from node.jobs.psi._link import LocalFrameTransport, PsiJobError, SessionLink, drive, session_channel
from node.jobs.psi._rows import PartyRows
from node.jobs.psi._sender import Patience, SenderRegistry
from node.jobs.psi.audience_overlap import overlap_sender_job, overlap_terms
from node.jobs.psi.local import run_local_job
from node.jobs.psi.outreach import OutboxChannel
from node.jobs.psi.recovery import recovery_sender_job, recovery_terms
from node.jobs.psi.tables import TableStore
from protocols.wire.control import JobParams, KeyType
from protocols.wire.errors import ProtocolError
from protocols.wire.psi import PsiChunk, PsiHello, PsiJobClose, PsiProtocol, Stream, encode_frame
from psi import PsiRemoteError
from psi.cardinality import CardinalityReceiver
from psi.group import Scalar, hash_to_group_batch, multiply_batch
from psi.identifiers import gb11643_check_digit

KT = KeyType.ID_NUMBER
CHANNEL = session_channel(KT)

K50 = JobParams(min_cell=50)
"""Parameters with the shipped policy's k, as the coordinator fills them into the signed terms."""


def _id(i: int) -> str:
    first17 = f"11010119800101{i:03d}"
    return first17 + gb11643_check_digit(first17)


IDS = [_id(i) for i in range(60)]


def _rows(ids, labels=None) -> PartyRows:
    return PartyRows(keys={KT: list(ids)}, record_ids=[f"C{i}" for i in range(len(ids))], labels=labels,
                     total_rows=len(ids))


@pytest.fixture
def served():
    """A telco overlap job (count mode) open in a registry; yields (registry, job)."""
    registry = SenderRegistry()
    terms = overlap_terms("7", KT, JobParams(output_mode="count", min_cell=50))
    job, _ = overlap_sender_job(_rows(IDS), terms)
    with registry.opened(job):
        yield registry, job


def _hello(size=2, protocol=PsiProtocol.CARDINALITY) -> bytes:
    return encode_frame(PsiHello(job_id="7", protocol=protocol, key_type=KT, set_size=size, chunk_size=1))


def _query(index: int, total: int = 2, body: bytes | None = None) -> bytes:
    if body is None:
        body = multiply_batch(Scalar.from_int(5), hash_to_group_batch(str(KT), [IDS[index]]))
    return encode_frame(PsiChunk(job_id="7", stream=Stream.QUERY, chunk=index, total_chunks=total, count=1,
                                 total_count=total, body=body))


def _fails(job, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        job.wait(Patience(5.0, 5.0))


def test_malformed_frame_fails_the_job_naming_the_stage(served):
    registry, job = served
    registry.dispatch("7", CHANNEL, _hello())
    with pytest.raises(PsiRemoteError, match=r"\[stage AWAIT_QUERY\] malformed frame"):
        registry.dispatch("7", CHANNEL, b"\x00\x00\x00\x05{not json")
    _fails(job, "AWAIT_QUERY")
    with pytest.raises(ProtocolError, match="already failed"):  # nothing more is answered
        registry.dispatch("7", CHANNEL, _query(0))


def test_out_of_order_chunk_is_refused(served):
    registry, job = served
    registry.dispatch("7", CHANNEL, _hello())
    with pytest.raises(PsiRemoteError, match=r"AWAIT_QUERY.*out-of-order chunk 1"):
        registry.dispatch("7", CHANNEL, _query(1))
    _fails(job, "out-of-order")


def test_replayed_chunk_is_refused(served):
    registry, job = served
    registry.dispatch("7", CHANNEL, _hello())
    registry.dispatch("7", CHANNEL, _query(0))
    with pytest.raises(PsiRemoteError, match=r"AWAIT_QUERY.*duplicate chunk 0"):
        registry.dispatch("7", CHANNEL, _query(0))
    _fails(job, "duplicate")


def test_invalid_point_is_refused(served):
    registry, job = served
    registry.dispatch("7", CHANNEL, _hello())
    registry.dispatch("7", CHANNEL, _query(0))  # cardinality evaluates the whole query set at its last chunk
    with pytest.raises(PsiRemoteError, match=r"AWAIT_QUERY.*invalid ristretto255 point"):
        registry.dispatch("7", CHANNEL, _query(1, body=b"\xff" * 32))
    _fails(job, "invalid ristretto255")


def test_oversized_frame_and_wrong_protocol_are_refused(served):
    registry, job = served
    with pytest.raises(PsiRemoteError, match=r"\[stage IDLE\] hello terms differ"):
        registry.dispatch("7", CHANNEL, _hello(protocol=PsiProtocol.ECDH))
    _fails(job, "IDLE")


def test_peer_gone_mid_stream_fails_after_the_idle_timeout(served):
    registry, job = served
    registry.dispatch("7", CHANNEL, _hello())
    with pytest.raises(PsiJobError, match=r"psi.id_number AWAIT_QUERY.*peer gone mid-stream"):
        job.wait(Patience(5.0, 0.2), poll=0.05)


def test_abort_and_premature_close_fail_the_job(served):
    registry, job = served
    registry.dispatch("7", CHANNEL, _hello())
    close = PsiJobClose(job_id="7", status="ok", sessions=[KT]).model_dump_json().encode()
    with pytest.raises(PsiRemoteError, match=r"close while psi.id_number is in stage AWAIT_QUERY"):
        registry.dispatch("7", "psi.close", close)
    _fails(job, "CLOSE")


def test_receiver_abort_reason_reaches_the_sender(served):
    registry, job = served
    abort = PsiJobClose(job_id="7", status="abort", reason="bank failed at stage x").model_dump_json().encode()
    with pytest.raises(PsiRemoteError, match="the receiver aborted: bank failed at stage x"):
        registry.dispatch("7", "psi.close", abort)
    _fails(job, "aborted")


def test_unknown_job_is_not_ready_yet():
    with pytest.raises(ProtocolError, match="not ready") as info:
        SenderRegistry().dispatch("99", CHANNEL, _hello())
    assert info.value.status_hint == 503


def test_malformed_reply_fails_the_receiver_naming_the_stage():
    link = SessionLink(LocalFrameTransport(lambda channel, frame: b"garbage"), "7")
    with pytest.raises(PsiJobError, match=r"\[psi.id_number stage AWAIT_WELCOME\] malformed reply"):
        drive(CardinalityReceiver(IDS, key_type=KT, job_id="7"), link, CHANNEL)


def test_evaluation_cap_refuses_a_hello_past_it(tmp_path):
    terms = recovery_terms("7", [KT], JobParams(output_mode="reveal", match_cap=3, min_cell=50))
    outbox = OutboxChannel(tmp_path / "outbox.db")
    job, _ = recovery_sender_job(_rows(IDS, labels=["13800000001"] * 60), terms,
                                 tables=TableStore(tmp_path / "psi"), outreach=outbox)
    registry = SenderRegistry()
    with registry.opened(job):
        with pytest.raises(PsiRemoteError, match=r"OPRF evaluation cap of this job reached: 0 used \+ 4 asked > cap 3"):
            registry.dispatch("7", CHANNEL, _hello(size=4, protocol=PsiProtocol.LABELED))
        _fails(job, "cap")
    outbox.close()


def test_reveal_receiver_stays_within_the_cap(tmp_path):
    bank = _rows(IDS[:10])
    telco = _rows(IDS, labels=[f"138000000{i:02d}" for i in range(60)])
    result = run_local_job(bank, telco, "recovery", JobParams(match_cap=7, min_cell=50), state_dir=tmp_path)
    assert result.bank["recovered"] == 7 and result.bank["not_queried_cap"] == 3
    assert result.telco["oprf_evaluations"] == 7
    expected = {f"C{i}": f"138000000{i:02d}" for i in range(10)}
    assert all(expected[cid] == number and by == "id_number" for cid, by, number in result.rows)


def test_empty_and_all_invalid_inputs_have_defined_outcomes(tmp_path):
    empty = run_local_job(_rows([]), _rows(IDS), "count", K50, state_dir=tmp_path)
    assert empty.bank["overlap"] == "suppressed (< k)" and empty.bank["bank_keys_valid"] == 0
    invalid = run_local_job(_rows(["123", "not an id", None]), _rows(IDS), "ids", K50, state_dir=tmp_path)
    assert invalid.bank["invalid_identifiers"] == {"id_number:bad_format": 2, "id_number:missing": 1}
    assert invalid.rows == [] and invalid.bank["matched_records_kept"] == "suppressed (< k)"
    dup = run_local_job(_rows(IDS * 2), _rows(IDS), "ids", K50, state_dir=tmp_path)
    assert dup.bank["overlap"] == 60 and dup.bank["bank_keys_distinct"] == 60 and len(dup.rows) == 120


def test_counts_are_suppressed_below_k_and_released_at_k(tmp_path):
    small = run_local_job(_rows(IDS[:49]), _rows(IDS), "count", K50, state_dir=tmp_path)
    assert small.bank["overlap"] == "suppressed (< k)" and small.bank["k"] == 50  # k is the terms' min_cell
    at_k = run_local_job(_rows(IDS[:50]), _rows(IDS), "count", K50, state_dir=tmp_path)
    assert at_k.bank["overlap"] == 50
    raised = run_local_job(_rows(IDS[:55]), _rows(IDS), "count", JobParams(min_cell=56), state_dir=tmp_path)
    assert raised.bank["overlap"] == "suppressed (< k)" and raised.bank["k"] == 56
    noised = run_local_job(_rows(IDS), _rows(IDS), "count", JobParams(epsilon=1.0, min_cell=1), state_dir=tmp_path)
    assert noised.bank["epsilon"] == 1.0 and (noised.bank["overlap"] == "suppressed (< k)"
                                              or abs(noised.bank["overlap"] - 60) < 40)
