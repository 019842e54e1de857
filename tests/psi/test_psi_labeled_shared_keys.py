"""A key value carrying many labels is taken out of a labeled-PSI table, counted, and never sent.

Such a value (a cloned IMEI, a shop's MAC) names no one; its record would give a receiver every
label on it, and would outgrow the wire's record size so that the whole session failed.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire.control import KeyType
from protocols.wire.psi import MAX_ELEMENT_BYTES
from psi import Scalar, prepare_sender_table
from psi.engine import run_local
from psi.labeled import MAX_LABELS_PER_KEY, SharedKeys, refuse_shared_keys

K = Scalar.from_int(12345)


def reference(records: list[tuple[str, str]], max_labels: int) -> tuple[list[tuple[str, str]], SharedKeys]:
    labels: dict[str, set[str]] = {}
    for key, label in records:
        labels.setdefault(key, set()).add(label)
    shared = {key for key, found in labels.items() if len(found) > max_labels}
    kept = [(key, label) for key, label in records if key not in shared]
    return kept, SharedKeys(len(shared), len(records) - len(kept))


@settings(max_examples=300, deadline=None)
@given(records=st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from("0123456789")), max_size=60),
       max_labels=st.integers(1, 6))
def test_refusal_equals_the_reference(records: list[tuple[str, str]], max_labels: int) -> None:
    kept, shared = refuse_shared_keys(records, max_labels=max_labels)

    assert (list(kept), shared) == reference(records, max_labels)


def test_a_key_value_on_thousands_of_numbers_is_left_out_and_the_session_completes() -> None:
    cloned = "86981203777123"
    numbers = [f"199{i:08d}" for i in range(3000)]
    records = [(cloned, n) for n in numbers] + [("49015420323751", "13800000001"), ("35332811000001", "13800000002")]

    run = run_local([cloned, "49015420323751"], records, "labeled", key_type=KeyType.IMEI)

    assert run.receiver.labels == {"49015420323751": ("13800000001",)}
    assert run.sender_report["shared_key_values"] == {"key_values": 1, "records": 3000}


def test_up_to_the_limit_a_shared_key_is_a_reported_conflict() -> None:
    records = [("49015420323751", f"1380000000{i}") for i in range(MAX_LABELS_PER_KEY)]

    run = run_local(["49015420323751"], records, "labeled", key_type=KeyType.IMEI)

    assert run.receiver.labels == {"49015420323751": tuple(sorted(n for _, n in records))}
    assert "shared_key_values" not in run.sender_report


def test_building_a_table_with_a_shared_key_is_refused_with_the_fix() -> None:
    records = [("k", f"1380000000{i}") for i in range(MAX_LABELS_PER_KEY + 1)]

    with pytest.raises(ValueError, match="refuse_shared_keys"):
        prepare_sender_table(records, key_type=KeyType.IMEI, key=K)


def test_a_key_at_the_limit_fits_the_wire_record_size() -> None:
    records = [("49015420323751", f"1380000000{i}") for i in range(MAX_LABELS_PER_KEY)]  # numbers, as in recovery

    table = prepare_sender_table(records, key_type=KeyType.IMEI, key=K)

    assert table.record_size <= MAX_ELEMENT_BYTES
