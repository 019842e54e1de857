"""The fast paths of ``psi.identifiers`` return exactly what the general path returns, for any input.

``reference_mobile`` and ``reference_id_number`` are the normalisers as they were before the fast
paths (regexes only, the GB 11643 weighted sum written out) after the shared Unicode folding
(``psi._unicode.fold``); every input either gives the same canonical string or the same refusal reason.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire.control import KeyType
from psi import InvalidIdentifier, gb11643_check_digit, normalise, normalise_column
from psi._unicode import fold
from psi.identifiers import normaliser

_SEPARATORS = re.compile(r"[\s\-.()/]")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def reference_check_digit(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def reference_mobile(raw: str) -> str:
    digits = _SEPARATORS.sub("", fold(KeyType.MOBILE, raw))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    if not digits.isdigit() or len(digits) != 11:
        raise InvalidIdentifier(KeyType.MOBILE, "bad_length" if digits.isdigit() else "bad_characters")
    if not re.fullmatch(r"1[3-9]\d{9}", digits):
        raise InvalidIdentifier(KeyType.MOBILE, "bad_prefix")
    return digits


def _reference_birth_date(yyyymmdd: str) -> None:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        raise InvalidIdentifier(KeyType.ID_NUMBER, "birth_date") from None
    if born.year < 1900:
        raise InvalidIdentifier(KeyType.ID_NUMBER, "birth_date")


def reference_id_number(raw: str) -> str:
    value = _SEPARATORS.sub("", fold(KeyType.ID_NUMBER, raw)).upper()
    if re.fullmatch(r"\d{15}", value):
        first17 = value[:6] + "19" + value[6:]
        _reference_birth_date(first17[6:14])
        return first17 + reference_check_digit(first17)
    if not re.fullmatch(r"\d{17}[\dX]", value):
        raise InvalidIdentifier(KeyType.ID_NUMBER, "bad_format")
    _reference_birth_date(value[6:14])
    if reference_check_digit(value[:17]) != value[17]:
        raise InvalidIdentifier(KeyType.ID_NUMBER, "check_digit")
    return value


REFERENCE = {KeyType.MOBILE: reference_mobile, KeyType.ID_NUMBER: reference_id_number}


def outcome(fn, raw: str) -> tuple[str, str]:
    try:
        return ("ok", fn(raw))
    except InvalidIdentifier as exc:
        return ("invalid", exc.reason)
    except Exception as exc:  # noqa: BLE001  # compared, so that a crash must crash the same way
        return ("error", type(exc).__name__)


# Characters that stress the fast path's shape test: ASCII digits, X/x, separators, non-ASCII
# decimal digits (Arabic-Indic, fullwidth) that regex ``\d`` and ``int`` accept, and superscripts
# that ``str.isdigit`` accepts but ``\d`` does not.
_ALPHABET = "0123456789" * 6 + "Xx -.()/+\t" + "٠١٢٣٤٥٦٧٨٩" + "０１２３" + "²³" + "a"


def _mutate(rng: random.Random, canonical: str) -> str:
    chars = list(canonical)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(3)
        pos = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            chars[min(pos, len(chars) - 1)] = rng.choice(_ALPHABET)
        elif op == 1:
            chars.insert(pos, rng.choice(_ALPHABET))
        elif chars:
            del chars[min(pos, len(chars) - 1)]
    return "".join(chars)


def _random_id_number(rng: random.Random) -> str:
    year = rng.choice([rng.randint(1890, 2030), rng.randint(1000, 9999)])
    month, day = rng.randint(0, 13), rng.randint(0, 32)
    first17 = f"{rng.randint(100000, 999999)}{year:04d}{month:02d}{day:02d}{rng.randint(0, 999):03d}"
    return first17 + (gb11643_check_digit(first17) if rng.random() < 0.7 else rng.choice("0123456789X"))


def _random_mobile(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
    return rng.choice("120") + "".join(rng.choice("0123456789") for _ in range(rng.choice([9, 10, 11])))


def _mixed_inputs(key_type: KeyType, seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    make = _random_id_number if key_type is KeyType.ID_NUMBER else _random_mobile
    out = []
    for _ in range(count):
        value = make(rng)
        kind = rng.randrange(5)
        if kind == 1:
            value = _mutate(rng, value)
        elif kind == 2:
            value = value.lower() if key_type is KeyType.ID_NUMBER else "+86 " + value
        elif kind == 3:
            value = value[:6] + value[8:17] if key_type is KeyType.ID_NUMBER else "0086" + value
        elif kind == 4:
            value = "".join(rng.choice(_ALPHABET) for _ in range(rng.choice([11, 13, 15, 18])))
        out.append(value)
    return out


@pytest.mark.parametrize("key_type", [KeyType.MOBILE, KeyType.ID_NUMBER])
@pytest.mark.parametrize("seed", range(4))
def test_fast_path_equals_reference_on_mixed_inputs(key_type, seed):
    inputs = _mixed_inputs(key_type, seed, 5000)
    reference = REFERENCE[key_type]

    got = [outcome(lambda raw: normalise(key_type, raw), raw) for raw in inputs]

    assert got == [outcome(reference, raw) for raw in inputs]
    assert {status for status, _ in got} == {"ok", "invalid"}  # both branches were exercised


@pytest.mark.parametrize("key_type", [KeyType.MOBILE, KeyType.ID_NUMBER])
def test_column_counts_equal_reference(key_type):
    inputs: list[str | None] = [*_mixed_inputs(key_type, 99, 3000), None, "", "  "]
    reference = REFERENCE[key_type]

    column = normalise_column(key_type, inputs)

    expected_invalid: Counter[tuple[str, str]] = Counter({(str(key_type), "missing"): 3})
    expected_values = []
    for raw in inputs[:-3]:
        status, value = outcome(reference, raw)  # type: ignore[arg-type]
        if status == "ok":
            expected_values.append(value)
        else:
            expected_invalid[(str(key_type), value)] += 1
    assert column.values == expected_values
    assert column.invalid == expected_invalid


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, min_size=0, max_size=20))
def test_fast_path_equals_reference_on_any_text(raw):
    for key_type, reference in REFERENCE.items():
        assert outcome(lambda r, kt=key_type: normalise(kt, r), raw) == outcome(reference, raw)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_check_digit_equals_weighted_sum(first17):
    assert gb11643_check_digit(first17) == reference_check_digit(first17)


def test_non_ascii_digits_normalise_to_the_ascii_canonical_form():
    arabic = "".join("٠١٢٣٤٥٦٧٨٩"[int(d)] for d in "11010519491231002") + "X"

    assert normalise(KeyType.ID_NUMBER, arabic) == reference_id_number(arabic) == "11010519491231002X"


@pytest.mark.parametrize("key_type", list(KeyType))
@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u3000"])
def test_no_normaliser_accepts_a_blank_string(key_type, blank):
    # normalise_column works out "missing" only for refused values; this is what makes that exact.
    with pytest.raises(InvalidIdentifier):
        normalise(key_type, blank)
    assert normalise_column(key_type, [blank]).invalid == Counter({(str(key_type), "missing"): 1})


def test_column_handles_none_str_subclasses_and_non_strings():
    class Raw(str):
        pass

    column = normalise_column(KeyType.MOBILE, [None, Raw("13812345678"), 13812345678, Raw("  ")])  # type: ignore[list-item]

    assert column.values == ["13812345678"] and column.indices == [1] and column.total == 4
    assert column.invalid == Counter({("mobile", "missing"): 2, ("mobile", "not_a_string"): 1})


def test_imei_with_superscript_digits_is_refused_not_a_crash():
    with pytest.raises(InvalidIdentifier) as info:
        normalise(KeyType.IMEI, "49015420323751²")
    assert info.value.reason == "bad_characters"


@pytest.mark.parametrize("key_type", list(KeyType))
def test_bound_normaliser_behaves_like_normalise(key_type):
    one = normaliser(key_type)
    inputs = [*_mixed_inputs(KeyType.ID_NUMBER, 7, 200), *_mixed_inputs(KeyType.MOBILE, 8, 200), " ", 5, None, b"x"]

    assert [outcome(one, raw) for raw in inputs] == [outcome(lambda r: normalise(key_type, r), raw) for raw in inputs]
