"""Audience overlap and recovery sessions send the same bytes and give the same results on every engine.

Sessions get fixed scalars and a seeded shuffle, so every frame is reproducible; each engine runs both
parties' group work (blinding, evaluation, sealing) through its mapper, and the frames are compared
byte for byte. Inputs are raw identifiers of every key type, invalid ones included.
"""

from __future__ import annotations

import random

import pytest

from node.spark import SparkMapper
from protocols.wire.control import KeyType
from protocols.wire.psi import OutputTo, decode_frame, encode_frame
from psi import serial_map
from psi.cardinality import CardinalityReceiver, CardinalitySender
from psi.ecdh import EcdhPsiReceiver, EcdhPsiSender
from psi.engine import ProcessPoolMapper, run_local
from psi.group import Scalar
from psi.identifiers import normalise_column

from ._data import subscribers

A, B = Scalar.from_int(1234567), Scalar.from_int(7654321)


def _frames(receiver, sender) -> list[bytes]:
    """Every frame of one session each way, in order (the wire bytes)."""
    frames, message = [], receiver.start()
    while message is not None:
        frames.append(encode_frame(message))
        reply = sender.handle(decode_frame(frames[-1]))
        if reply is None:
            break
        frames.append(encode_frame(reply))
        message = receiver.handle(decode_frame(frames[-1]))
    return frames


def _session_pair(mode: str, key_type: KeyType, mapper):
    bank_raw, _ = subscribers(key_type, 300, seed=1)
    telco_raw, _ = subscribers(key_type, 600, seed=1)  # same seed: the first 300 rows are the same
    bank = normalise_column(key_type, bank_raw).values
    telco = normalise_column(key_type, telco_raw).values
    common = {"key_type": key_type, "job_id": "j-1", "chunk_size": 256, "mapper": mapper}
    if mode == "count":
        return (CardinalityReceiver(bank, scalar=A, rng=random.Random(1), **common),
                CardinalitySender(telco, scalar=B, rng=random.Random(2), **common))
    return (EcdhPsiReceiver(bank, output_to=OutputTo.RECEIVER, scalar=A, rng=random.Random(1), **common),
            EcdhPsiSender(telco, output_to=OutputTo.RECEIVER, scalar=B, rng=random.Random(2), **common))


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolMapper(2) as mapper:
        yield mapper


@pytest.mark.parametrize(("mode", "key_type"), [("count", k) for k in KeyType]
                         + [("bank_ids", KeyType.ID_NUMBER), ("bank_ids", KeyType.MAC)], ids=str)
def test_overlap_frames_and_results_identical_on_every_engine(spark, pool, mode, key_type):
    spark_mapper = SparkMapper(spark)
    runs = {}
    for name, mapper in {"serial": serial_map, "pool": pool, "spark": spark_mapper}.items():
        receiver, sender = _session_pair(mode, key_type, mapper)
        runs[name] = (_frames(receiver, sender), receiver.result(), sender.result())

    frames, result, _ = runs["serial"]
    assert spark_mapper.jobs > 0
    assert runs["pool"] == runs["serial"] and runs["spark"] == runs["serial"]
    assert len(frames) >= 6  # several chunks
    overlap = result.intersection_size if mode == "count" else len(result.intersection)
    assert overlap > 150


def test_recovery_results_identical_on_every_engine(spark, pool):
    keys, numbers = subscribers(KeyType.IMEI, 300, seed=3)
    records = [(k, n) for k, n in zip(keys, numbers, strict=True) if k and n]
    query = keys[:120] + ["000000000000000", None]
    results = {name: run_local(query, records, "labeled", key_type=KeyType.IMEI, chunk_size=64, mapper=mapper)
               for name, mapper in {"serial": serial_map, "pool": pool, "spark": SparkMapper(spark)}.items()}
    labels = results["serial"].receiver.labels
    assert len(labels) > 50
    assert results["pool"].receiver.labels == labels and results["spark"].receiver.labels == labels
    assert results["spark"].receiver_report == results["serial"].receiver_report


@pytest.mark.parametrize("mode", ["count", "bank_ids"])
def test_sets_blinded_ahead_in_one_job_send_the_same_frames(spark, tmp_path, mode):
    """Each party's set is blinded by one Spark job up front and streamed out chunk by chunk, same bytes."""
    receiver, sender = _session_pair(mode, KeyType.MOBILE, serial_map)
    reference = (_frames(receiver, sender), receiver.result(), sender.result())

    mapper = SparkMapper(spark, workdir=tmp_path, ahead_min=1)
    receiver, sender = _session_pair(mode, KeyType.MOBILE, mapper)
    mapper.blind_ahead(receiver)
    mapper.blind_ahead(sender)
    assert mapper.jobs == 2 and len(list(tmp_path.iterdir())) == 2
    jobs_before = mapper.jobs
    assert (_frames(receiver, sender), receiver.result(), sender.result()) == reference
    # 300 + 600 elements in 256-element chunks would be 2 + 3 blinding jobs; only the evaluations ran on Spark now
    evaluations = mapper.jobs - jobs_before
    assert evaluations <= 1 + 3
    assert list(tmp_path.iterdir()) == []  # every blinded output was read to the end and removed


def test_blind_ahead_refuses_a_session_that_asks_out_of_order(spark, tmp_path):
    mapper = SparkMapper(spark, workdir=tmp_path, ahead_min=1)
    receiver, sender = _session_pair("count", KeyType.MOBILE, mapper)
    mapper.blind_ahead(sender)
    values = sender._values
    from psi._batch import blind_batch

    # a call for a later slice first is not the plan's next call: computed by a normal job, plan untouched
    assert mapper(blind_batch, [("mobile", values[256:260], B)]) == [blind_batch("mobile", values[256:260], B)]
    assert mapper(blind_batch, [("mobile", values[:4], B)]) == [blind_batch("mobile", values[:4], B)]
    mapper.close()
    assert list(tmp_path.iterdir()) == []
