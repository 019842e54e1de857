"""Deterministic subscriber rows of every key type: many spellings, invalid values, duplicates, shared keys."""

from __future__ import annotations

import random

from protocols.wire.control import KeyType
from psi.identifiers import gb11643_check_digit
from tests.support.psi_strategies import spellings

INVALID: dict[KeyType, list[str | None]] = {
    KeyType.MOBILE: [None, "", "12345", "10000000000", "+1 555 0100"],
    KeyType.ID_NUMBER: [None, " ", "110105194913010010", "123", "11010519491301001X1"],
    KeyType.IMEI: [None, "000000000000000", "123456789012345", "35000000000000x", "350000000000001"],
    KeyType.IDFA: [None, "00000000-0000-0000-0000-000000000000", "not-an-idfa", "ZZZ"],
    KeyType.MAC: [None, "ff:ff:ff:ff:ff:ff", "02:00:00:00:00:00", "01:23:45:67:89:ab", "06:11:22:33:44:55", "xyz"],
    KeyType.CUSTOMER_ID: [None, "", "x" * 65],
}


def canonical(key_type: KeyType, rng: random.Random) -> str:
    """One random canonical identifier of ``key_type``."""
    if key_type is KeyType.MOBILE:
        return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
    if key_type is KeyType.ID_NUMBER:
        first17 = f"{rng.randint(110000, 659999)}{rng.randint(1920, 1999)}{rng.randint(1, 12):02d}" \
                  f"{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
        return first17 + gb11643_check_digit(first17)
    if key_type is KeyType.IMEI:
        return "35" + "".join(rng.choice("0123456789") for _ in range(12))
    if key_type is KeyType.IDFA:
        h = "".join(rng.choice("0123456789ABCDEF") for _ in range(32))
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if key_type is KeyType.MAC:
        return f"{rng.randint(1, 63) << 2:02x}" + "".join(rng.choice("0123456789abcdef") for _ in range(10))
    return f"C{rng.randint(0, 10**9):09d}"


def subscribers(key_type: KeyType, n: int, seed: int = 7) -> tuple[list[str | None], list[str | None]]:
    """``n`` rows of (raw key, raw number): valid keys in varied spellings, invalid keys and numbers,
    keys repeated with the same and with other numbers, and one key shared by six numbers."""
    rng = random.Random(f"{key_type}-{seed}")
    keys: list[str | None] = []
    numbers: list[str | None] = []
    bad_numbers = INVALID[KeyType.MOBILE]
    shared = canonical(key_type, rng)
    for i in range(n):
        value = canonical(key_type, rng)
        forms = spellings(key_type, value) if key_type is not KeyType.CUSTOMER_ID else [value, f" {value} "]
        number = canonical(KeyType.MOBILE, rng)
        roll = rng.random()
        if roll < 0.08:
            keys.append(rng.choice(INVALID[key_type]))
        elif roll < 0.12 and keys and keys[-1] is not None:
            keys.append(keys[-1])  # the previous key again (family phone: a second number or the same)
            number = numbers[-1] if rng.random() < 0.5 and numbers[-1] else number
        elif i % 40 == 5:
            keys.append(shared)  # a key value shared by many numbers (left out of the table)
        else:
            keys.append(rng.choice(forms))
        numbers.append(rng.choice(bad_numbers) if rng.random() < 0.05 else rng.choice(spellings(KeyType.MOBILE,
                                                                                                number)))
    return keys, numbers
