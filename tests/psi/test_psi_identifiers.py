from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire.control import KeyType
from psi import InvalidIdentifier, PsiError, gb11643_check_digit, luhn_check_digit, normalise, normalise_column
from tests.support.psi_strategies import CANONICAL, spellings

# Known answers. GB 11643-1999's worked example is 11010519491231002X; the IMEI 490154203237518 is
# the Luhn example of 3GPP TS 23.003 Annex B (and Wikipedia's "IMEI" article).


def test_gb11643_known_answer():
    assert gb11643_check_digit("11010519491231002") == "X"


def test_luhn_known_answer():
    assert luhn_check_digit("49015420323751") == "8"


@pytest.mark.parametrize(
    ("key_type", "raw", "expected"),
    [
        (KeyType.MOBILE, "+86 138-1234-5678", "13812345678"),
        (KeyType.MOBILE, "008613812345678", "13812345678"),
        (KeyType.MOBILE, "8613812345678", "13812345678"),
        (KeyType.MOBILE, "(138) 1234 5678", "13812345678"),
        (KeyType.ID_NUMBER, "11010519491231002x", "11010519491231002X"),
        (KeyType.ID_NUMBER, "110105491231002", "11010519491231002X"),
        (KeyType.IMEI, "490154203237518", "49015420323751"),
        (KeyType.IMEI, "49015420323751", "49015420323751"),
        (KeyType.IMEI, "4901542032375107", "49015420323751"),
        (KeyType.IDFA, "6d92078a-8246-4ba4-ae5b-76104861e7dc", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
        (KeyType.IDFA, "6D92078A82464BA4AE5B76104861E7DC", "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
        (KeyType.MAC, "A4:BB:CC:DD:EE:0F", "a4bbccddee0f"),
        (KeyType.MAC, "a4bb.ccdd.ee01", "a4bbccddee01"),
        (KeyType.CUSTOMER_ID, "  C-001 ", "C-001"),
    ],
)
def test_normalise_examples(key_type, raw, expected):
    assert normalise(key_type, raw) == expected


@pytest.mark.parametrize(
    ("key_type", "raw", "reason"),
    [
        (KeyType.MOBILE, "1381234567", "bad_length"),
        (KeyType.MOBILE, "12812345678", "bad_prefix"),
        (KeyType.MOBILE, "138l2345678", "bad_characters"),
        (KeyType.ID_NUMBER, "110105194912310021", "check_digit"),
        (KeyType.ID_NUMBER, "110105194902300023", "birth_date"),
        (KeyType.ID_NUMBER, "1101051949123100", "bad_format"),
        (KeyType.IMEI, "490154203237517", "check_digit"),
        (KeyType.IMEI, "4901542032375", "bad_length"),
        (KeyType.IMEI, "00000000000000", "placeholder"),
        (KeyType.IDFA, "00000000-0000-0000-0000-000000000000", "placeholder"),
        (KeyType.IDFA, "6d92078a-8246-4ba4-ae5b", "bad_format"),
        (KeyType.MAC, "ff:ff:ff:ff:ff:ff", "placeholder"),
        (KeyType.MAC, "aa:bb:cc:dd:ee", "bad_format"),
    ],
)
def test_invalid_identifiers_raise_typed_error(key_type, raw, reason):
    with pytest.raises(InvalidIdentifier) as info:
        normalise(key_type, raw)
    assert info.value.reason == reason
    assert info.value.key_type == key_type
    assert isinstance(info.value, PsiError)


def test_normalise_column_counts_invalid_and_keeps_indices():
    column = normalise_column(KeyType.MOBILE, ["13812345678", None, "", "x", "+86 13912345678", "13812345678"])

    assert column.values == ["13812345678", "13912345678", "13812345678"]
    assert column.indices == [0, 4, 5]
    assert column.invalid == Counter({("mobile", "missing"): 2, ("mobile", "bad_characters"): 1})
    assert column.report() == {
        "key_type": "mobile",
        "total": 6,
        "valid": 3,
        "distinct": 2,
        "invalid": {"mobile:bad_characters": 1, "mobile:missing": 2},
    }


def test_all_invalid_column_is_empty_not_an_error():
    column = normalise_column(KeyType.IMEI, ["1", "2", "abc"])

    assert column.values == [] and column.invalid_count == 3


@settings(max_examples=60, deadline=None)
@given(data=st.data(), key_type=st.sampled_from(sorted(CANONICAL)))
def test_every_spelling_normalises_to_the_canonical_form(data, key_type):
    canonical = data.draw(CANONICAL[key_type])

    for raw in spellings(key_type, canonical):
        assert normalise(key_type, raw) == canonical
    assert normalise(key_type, canonical) == canonical  # idempotent
