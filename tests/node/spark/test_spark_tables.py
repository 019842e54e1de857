"""Recovery tables are byte-identical whichever engine built them: serial, process pool, Spark.

Every key type, with raw spellings, invalid keys and numbers, repeated keys and a shared key value.
Spark builds the table two ways: the driver-side sessions with :class:`SparkMapper`, and the whole
pipeline on a DataFrame (:func:`build_table`, sorted by Spark and streamed into the file).
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from node.jobs.psi.recovery import normalise_labels, pair_records
from node.spark import SparkMapper, build_table
from protocols.wire.control import KeyType
from psi import serial_map
from psi.engine import ProcessPoolMapper, load_table, save_table
from psi.group import Scalar
from psi.labeled import prepare_sender_table, refuse_shared_keys

from ._data import subscribers

KEY = Scalar.from_int(0x5EED_5EED_5EED)


def _reference(key_type: KeyType, keys, numbers, mapper):
    """The node's own path (``recovery_sender_job`` with a table store): labels, records, shared keys, table."""
    bad_labels: Counter[tuple[str, str]] = Counter()
    bad_keys: Counter[tuple[str, str]] = Counter()
    records = pair_records(keys, key_type, normalise_labels(numbers, bad_labels), bad_keys)
    kept, shared = refuse_shared_keys(records)
    table = prepare_sender_table(kept, key_type=key_type, key=KEY, mapper=mapper, batch=64)
    return table, bad_keys, bad_labels, shared


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolMapper(2) as mapper:
        yield mapper


@pytest.mark.parametrize("key_type", list(KeyType), ids=str)
def test_tables_are_identical_across_serial_pool_and_spark(spark, pool, tmp_path, key_type):
    keys, numbers = subscribers(key_type, 400)
    serial, bad_keys, bad_labels, shared = _reference(key_type, keys, numbers, serial_map)
    mapper = SparkMapper(spark)

    pooled = _reference(key_type, keys, numbers, pool)[0]
    mapped = _reference(key_type, keys, numbers, mapper)[0]
    frame = spark.createDataFrame(pd.DataFrame({"msisdn": numbers, "device": keys}), "msisdn string, device string")
    built = build_table(frame.repartition(3), key_type=key_type, key=KEY, path=tmp_path / "t.table",
                        workdir=tmp_path, key_column="device", label_column="msisdn")

    assert serial.count > 300 and shared.values == 1 and sum(bad_keys.values()) > 10
    assert mapper.jobs >= 1  # the sealing really ran on Spark
    assert pooled == serial and mapped == serial
    save_table(serial, tmp_path / "serial.table")
    assert (tmp_path / "t.table").read_bytes() == (tmp_path / "serial.table").read_bytes()
    assert load_table(built.path) == serial
    assert (built.invalid_keys, built.invalid_labels, built.shared) == (bad_keys, bad_labels, shared)
    assert list(tmp_path.glob("*.spark")) == []  # Spark's sorted output is removed after streaming


def test_an_empty_input_gives_the_empty_table(spark, tmp_path):
    frame = spark.createDataFrame(pd.DataFrame({"key": ["bad", None], "label": ["13800000000", None]}),
                                  "key string, label string")
    built = build_table(frame, key_type=KeyType.IMEI, key=KEY, path=tmp_path / "e.table", workdir=tmp_path)
    assert load_table(built.path) == prepare_sender_table([], key_type=KeyType.IMEI, key=KEY)
    assert built.invalid_keys == Counter({("imei", "missing"): 1, ("imei", "not_digits"): 1}) or built.count == 0


def test_the_engine_setting_picks_the_mapper(spark, tmp_path):
    from node.jobs.psi._rows import PartyRows
    from node.jobs.psi.recovery import mapper_for
    from node.settings import NodeSettings

    rows = PartyRows(keys={KeyType.IMEI: []}, record_ids=[], labels=[], total_rows=0)
    common = {"party": "telco", "kind": "telco", "api_token": "t0k3n-for-tests", "state_dir": tmp_path}
    with mapper_for(rows, NodeSettings(engine="spark", **common)) as mapper:
        assert isinstance(mapper, SparkMapper)
        table = prepare_sender_table([(f"35{i:012d}", "13800000000") for i in range(300)], key_type=KeyType.IMEI,
                                     key=KEY, mapper=mapper, batch=100)
        assert mapper.jobs == 1
    assert table == prepare_sender_table([(f"35{i:012d}", "13800000000") for i in range(300)],
                                         key_type=KeyType.IMEI, key=KEY)
    with mapper_for(rows, NodeSettings(engine="serial", **common)) as mapper:
        assert mapper is serial_map


def test_the_table_store_builds_the_epoch_table_with_spark_jobs(spark, tmp_path):
    """With the spark engine a recovery's table is built by build_table (two Spark jobs), then reused."""
    from node.jobs.psi.tables import TableStore

    keys, numbers = subscribers(KeyType.IMEI, 300)
    bad: Counter[tuple[str, str]] = Counter()
    records = pair_records(keys, KeyType.IMEI, normalise_labels(numbers, bad), bad)
    kept, shared = refuse_shared_keys(records)
    mapper = SparkMapper(spark, workdir=tmp_path)
    prepared = TableStore(tmp_path / "psi").table(KeyType.IMEI, records, mapper=mapper)
    assert mapper.jobs == 2 and not prepared.reused and prepared.shared == shared and shared.values == 1
    assert prepared.table == prepare_sender_table(kept, key_type=KeyType.IMEI, key=prepared.key)
    again = TableStore(tmp_path / "psi").table(KeyType.IMEI, records, mapper=mapper)
    assert again.reused and again.table == prepared.table and mapper.jobs == 2
    assert [p.name for p in tmp_path.iterdir()] == ["psi"]  # Spark's inputs and sorted output are removed
