import pytest

from protocols.wire.control import KeyType
from psi import MultiKeyMatcher, PsiLocalError
from psi.engine import run_multi_key_local

ID = "11010519491231002X"
IMEI_BODY = "49015420323751"


def test_priority_matching_conflicts_and_counts():
    customers = [
        {KeyType.ID_NUMBER: ID.lower(), KeyType.IMEI: IMEI_BODY + "8"},  # matched by ID; IMEI not asked
        {KeyType.IMEI: IMEI_BODY, KeyType.MAC: "a4:bb:cc:dd:ee:01"},  # IMEI has two phones: conflict
        {KeyType.MAC: "A4-BB-CC-DD-EE-02", KeyType.IDFA: "not-an-idfa"},  # matched by MAC; IDFA invalid
        {KeyType.MAC: "a4:bb:cc:dd:ee:03"},  # no match
    ]
    records = {
        KeyType.ID_NUMBER: [(ID, "13800000001")],
        KeyType.IMEI: [(IMEI_BODY, "13900000001"), (IMEI_BODY + "8", "13700000001")],
        KeyType.MAC: [("a4bbccddee02", "13600000001"), ("a4bbccddee01", "13500000001")],
    }

    result = run_multi_key_local(customers, records)

    assert result.matches == {0: (KeyType.ID_NUMBER, "13800000001"), 2: (KeyType.MAC, "13600000001")}
    assert result.conflicts == {1: (KeyType.IMEI, ("13700000001", "13900000001"))}
    assert result.hits_by_key == {KeyType.ID_NUMBER: 1, KeyType.IMEI: 0, KeyType.IDFA: 0, KeyType.MAC: 1}
    assert result.conflicts_by_key[KeyType.IMEI] == 1
    # customer 1 conflicted at IMEI, so its MAC (which has a label) is not queried again
    assert result.queried_by_key == {KeyType.ID_NUMBER: 1, KeyType.IMEI: 1, KeyType.IDFA: 0, KeyType.MAC: 2}
    assert result.invalid[("idfa", "bad_format")] == 1


def test_matcher_refuses_out_of_order_use():
    matcher = MultiKeyMatcher([{KeyType.MAC: "a4bbccddee01"}], priority=[KeyType.MAC])
    with pytest.raises(PsiLocalError):
        matcher.result()
    key_type, values = matcher.next_query()
    with pytest.raises(PsiLocalError):
        matcher.next_query()
    with pytest.raises(PsiLocalError):
        matcher.add_results(KeyType.MAC, {"ffffffffff00": ("x",)})
    matcher.add_results(key_type, {})
    assert matcher.next_query() is None
    assert matcher.result().matches == {}


def test_priority_must_not_repeat():
    with pytest.raises(ValueError):
        MultiKeyMatcher([], priority=[KeyType.MAC, KeyType.MAC])
