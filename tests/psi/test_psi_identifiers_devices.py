"""Device identifiers that are not identities are refused, counted by reason and never matched.

Many devices report the same placeholder (an all-zero IMEI or IDFA, Android's 02:00:00:00:00:00),
test equipment reports test IMEIs, and randomised or multicast MACs do not name a device. Matching on
any of them would join unrelated people, so each is refused in every spelling. The MAC properties are
checked against a reference that reads the first octet's bits as an integer, written independently of
the normaliser.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire.control import KeyType
from psi import InvalidIdentifier, luhn_check_digit, normalise, normalise_column
from psi.engine import run_local
from tests.support.psi_strategies import spellings

RUNS = "01234567890123456789012345"
EXAMPLES = settings(max_examples=200, deadline=None)


def _reason(key_type: KeyType, raw: str) -> str | None:
    try:
        normalise(key_type, raw)
    except InvalidIdentifier as exc:
        return exc.reason
    return None


def _imei_spellings(body: str, check: str, version: str) -> list[str]:
    """A body as 14 digits, 15 with a (possibly wrong) check digit, IMEISV, and grouped with dashes."""
    return [body, body + check, body + version, f"{body[:2]}-{body[2:8]}-{body[8:]}-{check}"]


@EXAMPLES
@given(digit=st.sampled_from("0123456789"), check=st.sampled_from("0123456789"), version=st.integers(0, 99))
def test_an_imei_of_one_repeated_digit_is_a_placeholder(digit: str, check: str, version: int) -> None:
    for raw in _imei_spellings(digit * 14, check, f"{version:02d}"):
        assert _reason(KeyType.IMEI, raw) == "placeholder", raw


@EXAMPLES
@given(start=st.integers(0, 9), descending=st.booleans(), version=st.integers(0, 99))
def test_an_imei_of_consecutive_digits_is_a_placeholder(start: int, descending: bool, version: int) -> None:
    body = RUNS[start : start + 14]
    body = body[::-1] if descending else body
    check = luhn_check_digit(body)

    for raw in _imei_spellings(body, check, f"{version:02d}"):
        assert _reason(KeyType.IMEI, raw) == "placeholder", raw
    assert _reason(KeyType.IMEI, "123456789012345") == "placeholder"


@EXAMPLES
@given(rbi=st.sampled_from(["00", "02", "03", "04", "05", "06", "07", "08", "09"]),
       rest=st.text("0123456789", min_size=12, max_size=12))
def test_a_test_imei_is_refused(rbi: str, rest: str) -> None:
    body = rbi + rest
    expected = "placeholder" if len(set(body)) == 1 or body in RUNS or body[::-1] in RUNS else "test_imei"

    for raw in _imei_spellings(body, luhn_check_digit(body), "01"):
        assert _reason(KeyType.IMEI, raw) == expected, raw


@EXAMPLES
@given(rbi=st.sampled_from(["01", "35", "86", "99"]), rest=st.text("0123456789", min_size=12, max_size=12))
def test_an_imei_of_a_real_reporting_body_is_kept(rbi: str, rest: str) -> None:
    body = rbi + rest
    if len(set(body)) == 1 or body in RUNS or body[::-1] in RUNS:
        return
    for raw in _imei_spellings(body, luhn_check_digit(body), "07"):
        assert normalise(KeyType.IMEI, raw) == body


@EXAMPLES
@given(hexit=st.sampled_from("0123456789abcdef"), upper=st.booleans())
def test_an_idfa_of_one_repeated_hex_digit_is_a_placeholder(hexit: str, upper: bool) -> None:
    h = (hexit * 32).upper() if upper else hexit * 32
    canonical = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    for raw in [canonical, canonical.replace("-", ""), "{" + canonical + "}"]:
        assert _reason(KeyType.IDFA, raw) == "placeholder", raw


def reference_mac(value: int) -> str:
    """What a 48-bit MAC is, read from the integer: a refusal reason or ``"ok"``."""
    text = f"{value:012x}"
    if len(set(text)) == 1 or value == 0x02_00_00_00_00_00:
        return "placeholder"
    first_octet = value >> 40
    if first_octet & 1:
        return "multicast_mac"
    if first_octet & 2:
        return "randomised_mac"
    return "ok"


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(st.integers(0, 2**48 - 1), st.sampled_from([0, 2**48 - 1, 0x02_00_00_00_00_00,
                                                                    0x11_11_11_11_11_11, 0x44_44_44_44_44_44])))
def test_every_mac_spelling_is_refused_or_kept_as_its_first_octet_says(value: int) -> None:
    canonical = f"{value:012x}"
    expected = reference_mac(value)

    for raw in spellings(KeyType.MAC, canonical):
        got = _reason(KeyType.MAC, raw)
        assert (got or "ok") == expected, raw
        if expected == "ok":
            assert normalise(KeyType.MAC, raw) == canonical


@pytest.mark.parametrize(("key_type", "raw", "reason"), [
    (KeyType.IMEI, "000000000000000", "placeholder"),
    (KeyType.IMEI, "123456789012345", "placeholder"),
    (KeyType.IMEI, "111111111111111", "placeholder"),
    (KeyType.IMEI, "004999010640000", "test_imei"),  # the 3GPP/GCF test IMEI
    (KeyType.IDFA, "00000000-0000-0000-0000-000000000000", "placeholder"),
    (KeyType.IDFA, "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "placeholder"),
    (KeyType.MAC, "00:00:00:00:00:00", "placeholder"),
    (KeyType.MAC, "ff:ff:ff:ff:ff:ff", "placeholder"),
    (KeyType.MAC, "02:00:00:00:00:00", "placeholder"),  # what Android >= 6 reports to apps
    (KeyType.MAC, "01:00:5e:00:00:fb", "multicast_mac"),  # IPv4 multicast (mDNS)
    (KeyType.MAC, "33:33:00:00:00:01", "multicast_mac"),  # IPv6 multicast
    (KeyType.MAC, "da:a1:19:5c:3e:02", "randomised_mac"),  # a per-network private address
    (KeyType.MAC, "6a:00:12:34:56:78", "randomised_mac"),
])
def test_known_non_identities(key_type: KeyType, raw: str, reason: str) -> None:
    assert _reason(key_type, raw) == reason


def test_placeholders_are_counted_and_never_matched_through_psi() -> None:
    # Both parties hold the same placeholder MACs and one real one: only the real one may match.
    shared = ["00:00:00:00:00:00", "02:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "da:a1:19:5c:3e:02",
              "01:00:5e:00:00:fb"]
    real = "a4:83:e7:12:34:56"

    run = run_local([*shared, real], [real, *shared, *shared], "intersection", key_type=KeyType.MAC)

    assert run.receiver.intersection == {"a483e7123456"}
    assert run.receiver_report["invalid"] == {"mac:multicast_mac": 1, "mac:placeholder": 3, "mac:randomised_mac": 1}
    assert run.sender_report["invalid"] == {"mac:multicast_mac": 2, "mac:placeholder": 6, "mac:randomised_mac": 2}


def test_a_column_counts_device_refusals_by_reason() -> None:
    column = normalise_column(KeyType.IMEI, ["000000000000000", "123456789012345", "004999010640000",
                                             "490154203237518", "490154203237518"])

    assert column.values == ["49015420323751", "49015420323751"]
    assert column.invalid == Counter({("imei", "placeholder"): 2, ("imei", "test_imei"): 1})
