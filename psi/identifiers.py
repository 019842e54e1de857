r"""Identifier normalisation: one canonical string per real-world identifier, or a typed refusal.

PSI matches exact strings, so two parties must spell the same identifier the same way. Every value
goes through :func:`normalise` before it is hashed to the group; values that fail are *counted* by
:func:`normalise_column` (by key type and reason) and never silently dropped or matched.

Text first: every value is folded to the ASCII it means (``psi._unicode.fold``: NFKC, format
characters such as zero-width spaces removed, full-width and other scripts' decimal digits as ASCII
digits, dashes as ``-``; superscripts and circled numbers refused), so a cell typed with a Chinese
input method or exported from office software matches its ASCII spelling.

Canonical forms:

============  =======================================================================================
mobile        11 digits, ``1[3-9]\\d{9}``; ``+86``, ``0086`` and ``86`` prefixes, spaces, dashes, dots
              and parentheses are removed.
id_number     18 characters (GB 11643-1999): 17 digits and a check digit ``0-9`` or ``X``; 15-digit
              (1985) numbers are upgraded by inserting ``19`` before the birth year and computing the
              check digit; the birth date must be a real date.
imei          the 14-digit body (TAC + serial). 15 digits: the Luhn digit must be right. 16 digits:
              IMEISV, the last two (software version) are dropped.
idfa          upper-case UUID ``8-4-4-4-12``.
mac           12 lower-case hex digits, any separator removed.
customer_id   stripped, 1–64 printable characters.
============  =======================================================================================

Device identifiers that are not identities are refused, counted by reason and never matched: one
value reported by many devices would join unrelated people.

=====  ==============================  ============================================================
imei   ``placeholder``                 one repeated digit (``000000000000000``, ``111…``) or a run
                                       of consecutive digits (``123456789012345``, ``987…``)
imei   ``test_imei``                   reporting body ``00`` or ``02``–``09``: test IMEIs (GSMA
                                       TS.06 Appendix A), never allocated to a device in service
idfa   ``placeholder``                 one repeated hex digit: the all-zero IDFA of "limit ad
                                       tracking" (and the Android advertising id when opted out)
mac    ``placeholder``                 one repeated hex digit (``00:00:…``, broadcast ``ff:ff:…``)
                                       and ``02:00:00:00:00:00`` (what Android ≥ 6 reports to apps)
mac    ``multicast_mac``               group bit set (least significant bit of the first octet)
mac    ``randomised_mac``              locally administered bit set (second-least significant bit
                                       of the first octet): a per-network random address (iOS ≥ 14,
                                       Android ≥ 10) or one set by software, not the device's own
=====  ==============================  ============================================================

Speed: a telco normalises every subscriber before building its tables (10⁷ values and more), so the
common case — a value that is *already* canonical ASCII — takes a fast path: mobile numbers are
checked with string predicates instead of a regex, ID numbers skip the separator regex, the birth
date check is cached (bounded), and the GB 11643 check character comes from one ``int(first17, 13)``
(13 ≡ 2 mod 11 and the weights are 2¹⁷⁻ʲ mod 11, so Σ dⱼ·wⱼ ≡ 2·int(first17, 13) mod 11). Every
other value takes the general path; both return exactly the same result (``tests/psi`` checks this
on random mixed-format inputs).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from protocols.wire.control import KeyType
from psi._errors import InvalidIdentifier
from psi._unicode import fold

__all__ = [
    "NormalisedColumn",
    "gb11643_check_digit",
    "luhn_check_digit",
    "normalise",
    "normalise_column",
    "normaliser",
]

_SEPARATORS = re.compile(r"[\s\-.()/]")
_MOBILE = re.compile(r"1[3-9]\d{9}")
_ID18 = re.compile(r"\d{17}[\dX]")
_ID15 = re.compile(r"\d{15}")
_HEX_ONLY = re.compile(r"[0-9a-f]+")
_MAC_SEPARATORS = re.compile(r"[\s:\-.]")
_GB11643_CODES = "10X98765432"
_MIN_BIRTH_YEAR = 1900
_MOBILE_SECOND_DIGITS = "3456789"
_RUNS = "0123456789" * 3
_IMEI_RUNS = frozenset(run for i in range(10) for run in (_RUNS[i : i + 14], _RUNS[i : i + 14][::-1]))
"""Every 14-digit run of consecutive digits, ascending (``12345678901234``) or descending."""
_TEST_IMEI_BODIES = frozenset(("00", "02", "03", "04", "05", "06", "07", "08", "09"))
"""Reporting body identifiers reserved for test IMEIs (GSMA TS.06, Appendix A)."""
_ANDROID_MAC = "020000000000"


def gb11643_check_digit(first17: str) -> str:
    """GB 11643-1999 check character of the first 17 digits of a resident ID number.

    Args:
        first17: Exactly 17 decimal digits.

    Returns:
        One of ``0``–``9`` or ``X``.

    Raises:
        ValueError: If ``first17`` is not 17 digits.
    """
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError("first17 must be 17 decimal digits")
    return _gb11643_code(first17)


def _gb11643_code(first17: str) -> str:
    """Check character of 17 (already validated) digits: Σ dⱼ·(2¹⁷⁻ʲ mod 11) ≡ 2·int(first17, 13) (mod 11)."""
    return _GB11643_CODES[2 * int(first17, 13) % 11]


def luhn_check_digit(body14: str) -> str:
    """Luhn check digit of a 14-digit IMEI body (TAC + serial number).

    Args:
        body14: Exactly 14 decimal digits.

    Returns:
        The single check digit.

    Raises:
        ValueError: If ``body14`` is not 14 digits.
    """
    if len(body14) != 14 or not body14.isdigit():
        raise ValueError("body14 must be 14 decimal digits")
    total = 0
    for position, char in enumerate(reversed(body14)):
        digit = int(char)
        if position % 2 == 0:  # doubled: the rightmost body digit sits next to the check digit
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def _normalise_mobile(raw: str) -> str:
    if len(raw) == 11 and raw.isascii() and raw.isdigit() and raw[0] == "1" and raw[1] in _MOBILE_SECOND_DIGITS:
        return raw  # fast path: already canonical
    digits = _SEPARATORS.sub("", fold(KeyType.MOBILE, raw))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
            break
    if not digits.isdigit() or len(digits) != 11:
        raise InvalidIdentifier(KeyType.MOBILE, "bad_length" if digits.isdigit() else "bad_characters")
    if not _MOBILE.fullmatch(digits):
        raise InvalidIdentifier(KeyType.MOBILE, "bad_prefix")
    return digits


@lru_cache(maxsize=1 << 16)  # bounded: ~180 years of dates; any input still gets the full check
def _is_birth_date(yyyymmdd: str) -> bool:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return born.year >= _MIN_BIRTH_YEAR


def _check_birth_date(yyyymmdd: str) -> None:
    if not _is_birth_date(yyyymmdd):
        raise InvalidIdentifier(KeyType.ID_NUMBER, "birth_date")


def _normalise_id_number(raw: str) -> str:
    if (
        len(raw) == 18
        and raw.isascii()
        and (raw.isdigit() or (raw[17] == "X" and raw[:17].isdigit()))
        and _is_birth_date(raw[6:14])
        and _GB11643_CODES[2 * int(raw[:17], 13) % 11] == raw[17]
    ):
        return raw  # fast path: already canonical and valid (ASCII digits, so no regex needed)
    value = _SEPARATORS.sub("", fold(KeyType.ID_NUMBER, raw)).upper()
    if _ID15.fullmatch(value):
        first17 = value[:6] + "19" + value[6:]
        _check_birth_date(first17[6:14])
        return first17 + _gb11643_code(first17)
    if not _ID18.fullmatch(value):
        raise InvalidIdentifier(KeyType.ID_NUMBER, "bad_format")
    _check_birth_date(value[6:14])
    if _gb11643_code(value[:17]) != value[17]:
        raise InvalidIdentifier(KeyType.ID_NUMBER, "check_digit")
    return value


def _normalise_imei(raw: str) -> str:
    digits = _SEPARATORS.sub("", fold(KeyType.IMEI, raw))
    if not digits.isdecimal():  # after folding, only ASCII digits are decimal
        raise InvalidIdentifier(KeyType.IMEI, "bad_characters")
    if len(digits) not in (14, 15, 16):
        raise InvalidIdentifier(KeyType.IMEI, "bad_length")
    body = digits[:14]
    if len(set(body)) == 1 or body in _IMEI_RUNS:  # before the Luhn digit: a placeholder whatever it ends with
        raise InvalidIdentifier(KeyType.IMEI, "placeholder")
    if body[:2] in _TEST_IMEI_BODIES:
        raise InvalidIdentifier(KeyType.IMEI, "test_imei")
    if len(digits) == 15 and luhn_check_digit(body) != digits[14]:
        raise InvalidIdentifier(KeyType.IMEI, "check_digit")
    return body


def _normalise_idfa(raw: str) -> str:
    hexits = fold(KeyType.IDFA, raw).strip().lower().replace("-", "").removeprefix("{").removesuffix("}")
    if len(hexits) != 32 or not _HEX_ONLY.fullmatch(hexits):
        raise InvalidIdentifier(KeyType.IDFA, "bad_format")
    if len(set(hexits)) == 1:
        raise InvalidIdentifier(KeyType.IDFA, "placeholder")
    h = hexits.upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _normalise_mac(raw: str) -> str:
    hexits = _MAC_SEPARATORS.sub("", fold(KeyType.MAC, raw).strip().lower())
    if len(hexits) != 12 or not _HEX_ONLY.fullmatch(hexits):
        raise InvalidIdentifier(KeyType.MAC, "bad_format")
    if len(set(hexits)) == 1 or hexits == _ANDROID_MAC:
        raise InvalidIdentifier(KeyType.MAC, "placeholder")
    first_octet = int(hexits[:2], 16)
    if first_octet & 0b01:
        raise InvalidIdentifier(KeyType.MAC, "multicast_mac")
    if first_octet & 0b10:
        raise InvalidIdentifier(KeyType.MAC, "randomised_mac")
    return hexits


def _normalise_customer_id(raw: str) -> str:
    value = fold(KeyType.CUSTOMER_ID, raw).strip()
    if not 1 <= len(value) <= 64 or not value.isprintable():
        raise InvalidIdentifier(KeyType.CUSTOMER_ID, "bad_format")
    return value


_NORMALISERS: dict[str, Callable[[str], str]] = {
    KeyType.MOBILE: _normalise_mobile,
    KeyType.ID_NUMBER: _normalise_id_number,
    KeyType.IMEI: _normalise_imei,
    KeyType.IDFA: _normalise_idfa,
    KeyType.MAC: _normalise_mac,
    KeyType.CUSTOMER_ID: _normalise_customer_id,
}


def normalise(key_type: KeyType, raw: str) -> str:
    """Canonical form of one identifier.

    Args:
        key_type: What kind of identifier ``raw`` is.
        raw: The value as found in the source data.

    Returns:
        The canonical string (see the module docstring).

    Raises:
        InvalidIdentifier: If ``raw`` is not a valid identifier of ``key_type``; ``reason`` says why.
    """
    if not isinstance(raw, str):
        raise InvalidIdentifier(key_type, "not_a_string")
    return _normaliser(key_type)(raw)


def normaliser(key_type: KeyType) -> Callable[[str], str]:
    """:func:`normalise` bound to one key type, for loops over many values (no per-value dispatch).

    Args:
        key_type: What kind of identifier every value is.

    Returns:
        A function of ``raw`` with exactly the behaviour of ``normalise(key_type, raw)``.
    """
    kind = KeyType(key_type)
    fn = _normaliser(kind)

    def normalise_one(raw: str) -> str:
        return fn(raw) if raw.__class__ is str else normalise(kind, raw)

    return normalise_one


def _normaliser(key_type: KeyType | str) -> Callable[[str], str]:
    """The per-type function (a ``KeyType`` is a ``str``, so the lookup needs no enum conversion)."""
    found = _NORMALISERS.get(key_type)
    return found if found is not None else _NORMALISERS[KeyType(key_type)]


@dataclass(frozen=True)
class NormalisedColumn:
    """A column after normalisation.

    Attributes:
        key_type: The identifier kind.
        values: Canonical values of the valid rows, in input order (duplicates kept).
        indices: For each entry of ``values``, its row index in the input.
        invalid: Count of refused rows by ``(key_type, reason)``; missing values count as ``"missing"``.
        total: Number of input rows.
    """

    key_type: KeyType
    values: list[str]
    indices: list[int]
    invalid: Counter[tuple[str, str]] = field(default_factory=Counter)
    total: int = 0

    @property
    def invalid_count(self) -> int:
        """Number of rows that were refused."""
        return sum(self.invalid.values())

    def report(self) -> dict[str, object]:
        """Aggregate report (counts only, no values), suitable for logs and job results."""
        return {
            "key_type": str(self.key_type),
            "total": self.total,
            "valid": len(self.values),
            "distinct": len(set(self.values)),
            "invalid": {f"{kt}:{reason}": n for (kt, reason), n in sorted(self.invalid.items())},
        }


def _is_missing(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _other_value(kind: KeyType, raw: object) -> str:
    """``normalise`` for a value that is not exactly a ``str`` (``None`` is missing)."""
    if raw is None:
        raise InvalidIdentifier(kind, "missing")
    return normalise(kind, raw)  # type: ignore[arg-type]  # a str subclass, or refused as not_a_string


def normalise_column(key_type: KeyType, values: Iterable[str | None]) -> NormalisedColumn:
    """Normalise a whole column, keeping row indices and counting refusals.

    Args:
        key_type: The identifier kind of every value.
        values: Raw values; ``None`` and empty strings count as ``"missing"``.

    Returns:
        The :class:`NormalisedColumn`.
    """
    kind = KeyType(key_type)
    fn, name = _normaliser(kind), str(kind)
    out: list[str] = []
    indices: list[int] = []
    invalid: Counter[tuple[str, str]] = Counter()
    index = -1
    for index, raw in enumerate(values):
        try:  # no normaliser accepts a blank string, so "missing" is only worked out for refusals
            out.append(fn(raw) if raw.__class__ is str else _other_value(kind, raw))
        except InvalidIdentifier as exc:
            invalid[(name, "missing" if _is_missing(raw) else exc.reason)] += 1
            continue
        indices.append(index)
    total = index + 1
    return NormalisedColumn(kind, out, indices, invalid, total)
