"""The telco's preparation inputs: normalised numbers and ``(key, number)`` records, counted refusals."""

from __future__ import annotations

from collections import Counter

import pytest

from node.jobs.psi._rows import PartyRows
from node.jobs.psi.recovery import _labels, _records
from protocols.wire.control import KeyType
from psi.identifiers import gb11643_check_digit, normalise


def _id(i: int) -> str:
    first17 = f"1101051949{i % 12 + 1:02d}{i % 28 + 1:02d}{i % 1000:03d}"
    return first17 + gb11643_check_digit(first17)


def _reference(keys, numbers):
    """What the preparation must produce, written out row by row."""
    invalid: Counter[tuple[str, str]] = Counter()
    records = []
    labels = []
    for raw in numbers:
        try:
            labels.append(normalise(KeyType.MOBILE, raw) if raw else None)
        except ValueError as exc:
            invalid[("mobile", exc.reason)] += 1
            labels.append(None)
    for raw, label in zip(keys, labels, strict=True):
        if raw is None or not raw.strip():
            invalid[("id_number", "missing")] += 1
            continue
        try:
            key = normalise(KeyType.ID_NUMBER, raw)
        except ValueError as exc:
            invalid[("id_number", exc.reason)] += 1
            continue
        if label is not None:
            records.append((key, label))
    return records, invalid


CLEAN = ([_id(i) for i in range(50)], [f"138{i:08d}" for i in range(50)])
MESSY = (
    [_id(0), _id(1).lower(), None, "", "123", _id(2)[:6] + _id(2)[8:17], _id(3), _id(4)],
    ["13800000000", "+86 138 0000 0001", "13800000002", "13800000003", "13800000004", "13800000005", "", "x"],
)


@pytest.mark.parametrize(("keys", "numbers"), [CLEAN, MESSY], ids=["all-valid", "messy"])
def test_records_and_counts_equal_the_row_by_row_reference(keys, numbers):
    rows = PartyRows(keys={KeyType.ID_NUMBER: keys}, record_ids=[str(i) for i in range(len(keys))],
                     labels=numbers, total_rows=len(keys))
    invalid: Counter[tuple[str, str]] = Counter()

    records = _records(rows, KeyType.ID_NUMBER, _labels(rows, invalid), invalid)

    assert (records, invalid) == _reference(keys, numbers)
