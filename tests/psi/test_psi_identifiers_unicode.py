"""Identifiers as people type them: every Unicode spelling that means the same identifier normalises to it.

A cell typed with a Chinese input method or exported from office software may hold full-width
digits and letters, other scripts' decimal digits, no-break or ideographic spaces, typographic
dashes, and invisible format characters (zero-width spaces, joiners, byte-order marks, soft hyphens,
bidirectional marks). The properties: each such spelling of a canonical identifier normalises to that
identifier; numeric characters that are not decimal digits (superscripts, circled numbers) and
Chinese numerals are refused, never read as digits; folding is idempotent and leaves no such
character behind.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire.control import KeyType
from psi import InvalidIdentifier, normalise, normalise_column
from psi._unicode import fold
from psi.engine import run_local
from tests.support.psi_strategies import CANONICAL, spellings

# Zero digits of scripts whose ten digits are consecutive code points of category Nd.
DIGIT_ZEROS = {
    "fullwidth": 0xFF10, "arabic-indic": 0x0660, "extended arabic-indic": 0x06F0, "devanagari": 0x0966,
    "bengali": 0x09E6, "thai": 0x0E50, "mathematical bold": 0x1D7CE, "mongolian": 0x1810,
}
FORMAT_CHARACTERS = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u200f", "\u2066"]
SPACES = [" ", "\u00a0", "\u3000", "\u202f", "\u2007"]
DASHES = ["-", "\uff0d", "\u2010", "\u2011", "\u2013", "\u2014", "\u2212", "\ufe63"]
NOT_DIGITS = ["²", "³", "①", "½", "⑴", "⒈", "¹"]  # category No: NFKC would make digits of them
CHINESE_NUMERALS = "〇一二三四五六七八九"


def _full_width(char: str) -> str:
    return chr(ord(char) - 0x21 + 0xFF01) if "!" <= char <= "~" else char


@st.composite
def typed(draw: st.DrawFn, text: str) -> str:
    """``text`` as an input method or office software might have stored it."""
    out = []
    for char in text:
        how = draw(st.integers(0, 3))
        if char.isdigit():
            script = draw(st.sampled_from(sorted(DIGIT_ZEROS)))
            out.append(chr(DIGIT_ZEROS[script] + int(char)) if how else char)
        elif char == " ":
            out.append(draw(st.sampled_from(SPACES)))
        elif char == "-":
            out.append(draw(st.sampled_from(DASHES)))
        else:
            out.append(_full_width(char) if how else char)
        if draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from(FORMAT_CHARACTERS)))
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), key_type=st.sampled_from(sorted(CANONICAL)))
def test_every_typed_spelling_normalises_to_the_canonical_form(data: st.DataObject, key_type: KeyType) -> None:
    canonical = data.draw(CANONICAL[key_type])
    raw = data.draw(st.sampled_from(spellings(key_type, canonical)))

    value = data.draw(typed(raw))

    assert normalise(key_type, value) == canonical


@settings(max_examples=150, deadline=None)
@given(data=st.data(), key_type=st.sampled_from(sorted(CANONICAL)), bad=st.sampled_from(NOT_DIGITS))
def test_a_numeric_character_that_is_not_a_digit_is_refused(data: st.DataObject, key_type: KeyType,
                                                               bad: str) -> None:
    raw = data.draw(st.sampled_from(spellings(key_type, data.draw(CANONICAL[key_type]))))
    at = data.draw(st.integers(0, len(raw)))

    with pytest.raises(InvalidIdentifier) as info:
        normalise(key_type, raw[:at] + bad + raw[at:])

    assert info.value.reason == "bad_characters"


@pytest.mark.parametrize(("key_type", "canonical"), [(KeyType.MOBILE, "13812345678"),
                                                      (KeyType.ID_NUMBER, "11010519491231002X"),
                                                      (KeyType.IMEI, "49015420323751")])
def test_chinese_numerals_are_not_digits(key_type: KeyType, canonical: str) -> None:
    written = "".join(CHINESE_NUMERALS[int(c)] if c.isdigit() else c for c in canonical)

    with pytest.raises(InvalidIdentifier):
        normalise(key_type, written)


@pytest.mark.parametrize(("key_type", "raw", "expected"), [
    (KeyType.MOBILE, "１３８　１２３４　５６７８", "13812345678"),                # full-width, ideographic spaces
    (KeyType.MOBILE, "\ufeff+86\u00a0138\u200b1234\u200b5678", "13812345678"),  # BOM, no-break and zero-width spaces
    (KeyType.MOBILE, "138–1234—5678", "13812345678"),                            # en and em dashes from Word
    (KeyType.ID_NUMBER, "１１０１０５１９４９１２３１００２ｘ", "11010519491231002X"),  # full-width x
    (KeyType.IMEI, "٤٩٠١٥٤٢٠٣٢٣٧٥١٨", "49015420323751"),                        # Arabic-Indic digits
    (KeyType.IMEI, "४९०१५४२०३२३७५१८", "49015420323751"),                        # Devanagari digits
    (KeyType.MAC, "Ａ４：ＢＢ：ＣＣ：ＤＤ：ＥＥ：０Ｆ", "a4bbccddee0f"),             # full-width colons and letters
    (KeyType.MAC, "a4bb。ccdd。ee0f", "a4bbccddee0f"),                           # ideographic full stops
    (KeyType.IDFA, "６Ｄ９２０７８Ａ－８２４６－４ＢＡ４－ＡＥ５Ｂ－７６１０４８６１Ｅ７ＤＣ",
     "6D92078A-8246-4BA4-AE5B-76104861E7DC"),
    (KeyType.CUSTOMER_ID, "Ｃ－００１\u200d", "C-001"),
])
def test_office_and_input_method_examples(key_type: KeyType, raw: str, expected: str) -> None:
    assert normalise(key_type, raw) == expected


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=30))
def test_folding_is_idempotent_and_leaves_no_format_dash_or_foreign_digit(text: str) -> None:
    try:
        once = fold("customer_id", text)
    except InvalidIdentifier as exc:
        assert exc.reason == "bad_characters"
        assert any(unicodedata.category(c) == "No" for c in text)
        return

    assert fold("customer_id", once) == once
    for char in once:
        assert char.isascii() or unicodedata.category(char) not in ("Cf", "Pd", "No", "Nd"), repr(char)


def test_typed_spellings_match_their_ascii_twins_through_psi() -> None:
    # Bank types with an input method, telco exports ASCII: the same people must match, nobody else.
    bank = ["１３８ １２３４ ５６７８", "\u200b13912345678", "+86\u00a0137–1234–5678", "１３６１２３４５６７8"]
    telco = ["13812345678", "13912345678", "13712345678", "13012345678"]

    run = run_local(bank, telco, "intersection")

    assert run.receiver.intersection == {"13812345678", "13912345678", "13712345678"}
    assert run.receiver_report["invalid"] == {}


def test_a_column_counts_unicode_refusals_by_reason() -> None:
    raw = ["٤٩٠١٥٤٢٠٣٢٣٧٥١٨", "49015420323751²", "四九〇一五四二〇三二三七五一八", None]

    column = normalise_column(KeyType.IMEI, raw)

    assert column.values == ["49015420323751"]
    assert column.invalid == Counter({("imei", "bad_characters"): 2, ("imei", "missing"): 1})
