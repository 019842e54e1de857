"""Hypothesis strategies: canonical identifiers of every key type and raw spellings of them."""

from __future__ import annotations

from hypothesis import strategies as st

from protocols.wire.control import KeyType
from psi.identifiers import gb11643_check_digit, luhn_check_digit

digits = st.text("0123456789", min_size=1, max_size=1)


@st.composite
def mobile(draw):
    return "1" + draw(st.sampled_from("3456789")) + "".join(draw(st.lists(digits, min_size=9, max_size=9)))


@st.composite
def id_number(draw):
    region = draw(st.integers(110000, 659999))
    year = draw(st.integers(1920, 1999))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    seq = draw(st.integers(0, 999))
    first17 = f"{region}{year}{month:02d}{day:02d}{seq:03d}"
    return first17 + gb11643_check_digit(first17)


@st.composite
def imei(draw):
    return "35" + "".join(draw(st.lists(digits, min_size=12, max_size=12)))


@st.composite
def idfa(draw):
    h = draw(st.text("0123456789ABCDEF", min_size=32, max_size=32).filter(lambda s: len(set(s)) > 1))
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@st.composite
def mac(draw):
    """A universally administered unicast MAC (first octet's two low bits clear) that is not constant."""
    first = draw(st.integers(0, 63)) << 2
    rest = draw(st.text("0123456789abcdef", min_size=10, max_size=10))
    return draw(st.just(f"{first:02x}{rest}").filter(lambda s: len(set(s)) > 1 and s != "020000000000"))


CANONICAL = {
    KeyType.MOBILE: mobile(),
    KeyType.ID_NUMBER: id_number(),
    KeyType.IMEI: imei(),
    KeyType.IDFA: idfa(),
    KeyType.MAC: mac(),
}


def spellings(key_type: KeyType, canonical: str) -> list[str]:
    """Raw forms that must all normalise to ``canonical``."""
    c = canonical
    if key_type is KeyType.MOBILE:
        return [c, f"+86 {c}", f"0086{c}", f"86-{c[:3]}-{c[3:7]}-{c[7:]}", f" {c[:3]} {c[3:7]} {c[7:]} "]
    if key_type is KeyType.ID_NUMBER:
        forms = [c, c.lower(), f"{c[:6]} {c[6:14]} {c[14:]}"]
        if c[6:8] == "19":
            forms.append(c[:6] + c[8:17])  # the 15-digit (1985) form
        return forms
    if key_type is KeyType.IMEI:
        return [c, c + luhn_check_digit(c), c + "07", f"{c[:2]}-{c[2:8]}-{c[8:]}"]
    if key_type is KeyType.IDFA:
        return [c, c.lower(), c.replace("-", ""), "{" + c.lower() + "}"]
    return [
        c,
        ":".join(c[i : i + 2] for i in range(0, 12, 2)).upper(),
        "-".join(c[i : i + 2] for i in range(0, 12, 2)),
        ".".join(c[i : i + 4] for i in range(0, 12, 4)),
    ]


@st.composite
def raw_spelling(draw, key_type: KeyType, canonical: str):
    return draw(st.sampled_from(spellings(key_type, canonical)))
