import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire.control import KeyType
from protocols.wire.psi import (
    OutputTo,
    PsiAck,
    PsiChunk,
    PsiHello,
    PsiProtocol,
    PsiPull,
    PsiWelcome,
    Stream,
    decode_frame,
    encode_frame,
)
from psi import (
    CardinalityReceiver,
    CardinalitySender,
    EcdhPsiReceiver,
    EcdhPsiSender,
    LabeledPsiReceiver,
    LabeledPsiSender,
    PeerSetTooLarge,
    PsiCryptoError,
    PsiLocalError,
    PsiRemoteError,
    Scalar,
    prepare_sender_table,
)
from psi.engine import run_local
from psi.labeled import MAX_LABELS_PER_KEY
from tests.support.psi_strategies import CANONICAL, raw_spelling

FAST = settings(max_examples=12, deadline=None)
KEY_TYPES = sorted(CANONICAL)
BAD_POINT = bytes.fromhex("ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20")  # RFC 9496 A.2


@st.composite
def two_sets(draw, max_size=12):
    key_type = draw(st.sampled_from(KEY_TYPES))
    pool = draw(st.lists(CANONICAL[key_type], max_size=2 * max_size, unique=True))
    receiver = draw(st.lists(st.sampled_from(pool), max_size=max_size)) if pool else []
    sender = draw(st.lists(st.sampled_from(pool), max_size=max_size)) if pool else []
    raw_r = [draw(raw_spelling(key_type, v)) for v in receiver]
    raw_s = [draw(raw_spelling(key_type, v)) for v in sender]
    return key_type, receiver, sender, raw_r, raw_s


# ---------------------------------------------------------------- results equal Python set / dict results


@FAST
@given(case=two_sets(), output=st.sampled_from(list(OutputTo)), chunk=st.integers(1, 5))
def test_intersection_equals_set_intersection(case, output, chunk):
    key_type, receiver, sender, raw_r, raw_s = case
    mode = "intersection" if output is OutputTo.RECEIVER else "intersection_to_sender"

    run = run_local(raw_r, raw_s, mode, key_type=key_type, chunk_size=chunk, rng=random.Random(1))

    learner, other = (run.receiver, run.sender) if output is OutputTo.RECEIVER else (run.sender, run.receiver)
    assert learner.intersection == set(receiver) & set(sender)
    assert other.intersection is None
    assert (learner.receiver_size, learner.sender_size) == (len(set(receiver)), len(set(sender)))


@FAST
@given(case=two_sets(), chunk=st.integers(1, 5))
def test_cardinality_equals_size_of_set_intersection(case, chunk):
    key_type, receiver, sender, raw_r, raw_s = case

    run = run_local(raw_r, raw_s, "cardinality", key_type=key_type, chunk_size=chunk)

    assert run.receiver.intersection_size == run.receiver.released_size == len(set(receiver) & set(sender))
    assert run.sender == len(set(receiver))


@FAST
@given(
    case=two_sets(),
    labels=st.lists(st.text("0123456789", min_size=11, max_size=11), min_size=1),
    chunk=st.integers(1, 5),
)
def test_labeled_equals_dict_lookup(case, labels, chunk):
    key_type, receiver, sender, raw_r, raw_s = case
    records = [(raw, labels[i % len(labels)]) for i, raw in enumerate(raw_s)]
    expected: dict[str, set[str]] = {}
    for canonical, (_, label) in zip(sender, records, strict=True):
        expected.setdefault(canonical, set()).add(label)

    run = run_local(raw_r, records, "labeled", key_type=key_type, chunk_size=chunk)

    kept = {k: v for k, v in expected.items() if len(v) <= MAX_LABELS_PER_KEY}  # more: a shared key value, refused
    assert run.receiver.labels == {k: tuple(sorted(v)) for k, v in kept.items() if k in set(receiver)}
    assert run.sender == len(set(receiver))


def test_cardinality_noise_is_seeded_and_clamped():
    values = [f"138{i:08d}" for i in range(6)]

    a = run_local(values, values[:3], "cardinality", epsilon=0.5, rng=random.Random(7)).receiver
    b = run_local(values, values[:3], "cardinality", epsilon=0.5, rng=random.Random(7)).receiver

    assert a.intersection_size == 3 and a.released_size == b.released_size >= 0
    assert a.epsilon == 0.5


# The law of the noise (a chi-square goodness-of-fit test) is in test_psi_cardinality_noise.py.


# ---------------------------------------------------------------- defined outcomes for edge inputs


@pytest.mark.parametrize("mode", ["intersection", "intersection_to_sender", "cardinality", "labeled"])
@pytest.mark.parametrize(("receiver", "sender"), [([], []), ([], ["13800000000"]), (["13800000000"], [])])
def test_empty_sets_complete_with_empty_results(mode, receiver, sender):
    sender_in = [(v, "x") for v in sender] if mode == "labeled" else sender

    run = run_local(receiver, sender_in, mode)

    outcome = {
        "intersection": lambda: run.receiver.intersection,
        "intersection_to_sender": lambda: run.sender.intersection,
        "cardinality": lambda: run.receiver.intersection_size,
        "labeled": lambda: run.receiver.labels,
    }[mode]()
    assert not outcome


def test_all_invalid_identifiers_are_reported_not_matched():
    run = run_local(["bad", "1234", None], ["bad", "1234"], "intersection")

    assert run.receiver.intersection == frozenset()
    assert run.receiver_report["invalid"] == {"mobile:bad_characters": 1, "mobile:bad_length": 1, "mobile:missing": 1}


def test_duplicate_identifiers_collapse_before_the_protocol():
    run = run_local(["13800000000", "+86 13800000000", "13800000001"], ["13800000000"] * 3, "intersection")

    assert run.receiver.intersection == {"13800000000"}
    assert (run.receiver.receiver_size, run.receiver.sender_size) == (2, 1)


# ---------------------------------------------------------------- stage transitions: exhaustive

JOB = "job-1"


def _all_messages():
    messages = [
        PsiHello(job_id=JOB, protocol=p, key_type=KeyType.MOBILE, set_size=1, chunk_size=4) for p in PsiProtocol
    ]
    messages += [PsiWelcome(job_id=JOB, protocol=p, set_size=1, chunk_size=4) for p in PsiProtocol]
    for stream in Stream:
        messages.append(PsiChunk(job_id=JOB, stream=stream, chunk=0, total_chunks=1, count=0, total_count=0))
        messages.append(PsiPull(job_id=JOB, stream=stream, chunk=0))
        messages.append(PsiAck(job_id=JOB, stream=stream, chunk=0))
    return messages


def _sessions():
    key = Scalar.from_int(99)
    table = prepare_sender_table([("13800000000", "x")], key_type=KeyType.MOBILE, key=key)
    common = {"key_type": KeyType.MOBILE, "job_id": JOB}
    return [
        lambda: EcdhPsiReceiver(["13800000000"], **common),
        lambda: EcdhPsiSender(["13800000000"], **common),
        lambda: EcdhPsiReceiver(["13800000000"], output_to=OutputTo.SENDER, **common),
        lambda: EcdhPsiSender(["13800000000"], output_to=OutputTo.SENDER, **common),
        lambda: CardinalityReceiver(["13800000000"], **common),
        lambda: CardinalitySender(["13800000000"], **common),
        lambda: LabeledPsiReceiver(["13800000000"], **common),
        lambda: LabeledPsiSender(table, key=key, job_id=JOB),
    ]


def _out_of_table_cases():
    from psi import event_of

    for index, factory in enumerate(_sessions()):
        cls = type(factory())
        for stage in cls.Stage:
            for message in _all_messages():
                if (stage, event_of(message)) not in cls.TRANSITIONS:
                    name = f"{index}-{cls.__name__}-{stage.name}-{event_of(message)}"
                    yield pytest.param(factory, stage, message, id=name)


@pytest.mark.parametrize(("factory", "stage", "message"), list(_out_of_table_cases()))
def test_every_out_of_table_message_raises_before_any_work(factory, stage, message):
    session = factory()
    session._stage = stage  # white-box: place the session in the stage under test

    with pytest.raises(PsiRemoteError) as info:
        session.handle(message)

    assert info.value.stage == stage.name
    assert session.stage is stage


def test_every_table_entry_names_an_existing_handler():
    for factory in _sessions():
        session = factory()
        for handler in session.TRANSITIONS.values():
            assert callable(getattr(session, handler))


def test_start_twice_and_early_result_are_local_errors():
    receiver = EcdhPsiReceiver(["13800000000"], key_type=KeyType.MOBILE, job_id=JOB)
    with pytest.raises(PsiLocalError):
        receiver.result()
    receiver.start()
    with pytest.raises(PsiLocalError):
        receiver.start()


# ---------------------------------------------------------------- malformed input from the peer


def _opened(chunk_size=2, n=5):
    common = {"key_type": KeyType.MOBILE, "job_id": JOB, "chunk_size": chunk_size}
    values = [f"138{i:08d}" for i in range(n)]
    receiver, sender = EcdhPsiReceiver(values, **common), EcdhPsiSender(values, **common)
    first_query = receiver.handle(sender.handle(receiver.start()))
    return receiver, sender, first_query


def test_duplicate_chunk_is_refused():
    receiver, sender, query = _opened()
    sender.handle(query)

    with pytest.raises(PsiRemoteError, match="duplicate chunk 0"):
        sender.handle(query)


def test_skipped_chunk_is_refused():
    _, sender, query = _opened()

    with pytest.raises(PsiRemoteError, match="out-of-order"):
        sender.handle(query.model_copy(update={"chunk": 1}))


def test_truncated_chunk_is_refused():
    _, sender, query = _opened()

    with pytest.raises(PsiRemoteError, match="truncated"):
        sender.handle(query.model_copy(update={"body": query.body[:-1]}))


def test_wrong_count_or_totals_are_refused():
    _, sender, query = _opened()

    with pytest.raises(PsiRemoteError, match="sizes"):
        sender.handle(query.model_copy(update={"count": 1, "body": query.body[:32]}))


def test_invalid_point_is_a_remote_error_naming_the_stage():
    _, sender, query = _opened()

    with pytest.raises(PsiRemoteError, match="AWAIT_QUERY.*invalid ristretto255 point encoding at element 1"):
        sender.handle(query.model_copy(update={"body": query.body[:32] + BAD_POINT}))


def test_message_for_another_job_is_refused():
    _, sender, query = _opened()

    with pytest.raises(PsiRemoteError, match="another job"):
        sender.handle(query.model_copy(update={"job_id": "job-2"}))


def test_hello_with_other_terms_is_refused():
    sender = EcdhPsiSender([], key_type=KeyType.IMEI, job_id=JOB)
    hello = EcdhPsiReceiver([], key_type=KeyType.MOBILE, job_id=JOB).start()

    with pytest.raises(PsiRemoteError, match="terms"):
        sender.handle(hello)


def test_oversized_and_malformed_frames_are_refused():
    _, _, query = _opened()
    frame = encode_frame(query)

    with pytest.raises(ValueError):
        decode_frame(frame, max_frame_bytes=len(frame) - 1)
    with pytest.raises(ValueError):
        decode_frame(frame[:10])
    with pytest.raises(ValueError):
        PsiChunk(job_id=JOB, stream=Stream.QUERY, chunk=0, total_chunks=1, count=70_000, total_count=70_000)
    assert decode_frame(frame) == query and decode_frame(frame).body == query.body


def test_tampered_label_record_fails_opaquely():
    key = Scalar.from_int(1234)
    table = prepare_sender_table([("13800000000", "13900000000")], key_type=KeyType.MOBILE, key=key)
    sender = LabeledPsiSender(table, key=key, job_id=JOB)
    receiver = LabeledPsiReceiver(["13800000000"], key_type=KeyType.MOBILE, job_id=JOB)
    pull = receiver.handle(sender.handle(receiver.handle(sender.handle(receiver.start()))))
    chunk = sender.handle(pull)
    tampered = chunk.body[:-1] + bytes([chunk.body[-1] ^ 1])

    with pytest.raises(PsiCryptoError):
        receiver.handle(chunk.model_copy(update={"body": tampered}))


def test_sender_table_is_deterministic_per_key_and_bound_to_it():
    records = [("13800000000", "a"), ("13800000001", "b")]
    key = Scalar.from_int(42)

    first = prepare_sender_table(records, key_type=KeyType.MOBILE, key=key)
    again = prepare_sender_table(list(reversed(records)), key_type=KeyType.MOBILE, key=key)

    assert first == again
    with pytest.raises(ValueError):
        LabeledPsiSender(first, key=Scalar.from_int(43), job_id=JOB)


# ---------------------------------------------------------------- a bound on the peer's set (output to the sender)


def test_a_receiver_refuses_a_sender_set_over_its_cap_before_sending_any_element():
    """Output-to-sender PSI tests every sender element against the receiver's set: the receiver bounds it."""
    common = {"key_type": KeyType.MOBILE, "job_id": JOB, "output_to": OutputTo.SENDER}
    mine = [f"138{i:08d}" for i in range(5)]
    theirs = [f"139{i:08d}" for i in range(11)]
    receiver = EcdhPsiReceiver(mine, max_sender_size=10, **common)
    welcome = EcdhPsiSender(theirs, **common).handle(receiver.start())

    with pytest.raises(PeerSetTooLarge, match="11 elements, more than the 10"):
        receiver.handle(welcome)
    assert receiver.stage.name == "AWAIT_WELCOME"  # no query (no blinded element) was produced

    at_cap = EcdhPsiReceiver(mine, max_sender_size=11, **common)
    assert at_cap.handle(EcdhPsiSender(theirs, **common).handle(at_cap.start())) is not None
