"""The filter grammar bounds numeric literals: every accepted number fits an int64 or is a finite double."""

from __future__ import annotations

import math

import pytest

from protocols.wire.filters import MAX_NUMBER_CHARS, MAX_NUMBER_DIGITS, FilterSyntaxError, parse_filter


@pytest.mark.parametrize(("literal", "value"), [
    ("999999999999999999", 999_999_999_999_999_999),  # 18 digits: the most an int64 always holds
    ("-999999999999999999", -999_999_999_999_999_999),
    ("000000000000000000000007", 7),  # leading zeros are not significant
    ("123456789.123456789", 123456789.123456789),
    ("0.000000000000000000000000000001", 1e-30),
    ("2.50000000000000000000000000", 2.5),  # nor are trailing zeros of a fraction
])
def test_numbers_within_the_bounds_parse(literal, value):
    (pred,) = parse_filter(f"score >= {literal}")
    assert pred.value == value and type(pred.value) is type(value)
    assert not isinstance(pred.value, float) or math.isfinite(pred.value)


@pytest.mark.parametrize("literal", [
    "9" * 490,  # the overflow: passes int(), overflows int64 at the node
    "1234567890123456789",  # 19 digits
    "-" + "9" * 19,
    "1" * 400 + ".5",  # float(...) of this is inf
    "0." + "0" * 60 + "1",  # finite, but longer than MAX_NUMBER_CHARS
])
def test_oversized_numbers_are_refused_with_the_limit_and_the_fix(literal):
    with pytest.raises(FilterSyntaxError) as err:
        parse_filter(f"age >= 25 and score < {literal}")
    message = str(err.value)
    assert f"at most {MAX_NUMBER_DIGITS} significant digits and {MAX_NUMBER_CHARS} characters" in message
    assert "use a shorter number" in message and len(err.value.token) <= 24
    print(f"{len(literal)}-character literal refused: {message[:110]}")
