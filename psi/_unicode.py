"""Unicode folding: the text step before every identifier normaliser (``psi.identifiers``).

Tables typed with Chinese input methods, or exported from office software, spell one identifier with
code points other than ASCII. :func:`fold` maps each such spelling to the ASCII text it means:

===========================================  ===========================================================
found in the cell                            becomes
===========================================  ===========================================================
full-width digits, letters, punctuation      ASCII (NFKC): ``１３８``→``138``, ``Ｘ``→``X``, ``：``→``:``
ideographic, no-break, narrow, figure space  a space (NFKC), which every normaliser treats as a separator
zero-width space, (non-)joiner, word joiner, removed: invisible, they carry nothing (category Cf, "format")
BOM, soft hyphen, bidirectional marks
dashes (category Pd) and the minus sign      ``-``, a separator
ideographic full stop ``。``                  ``.`` (the "." key in Chinese input mode)
decimal digits of any script (category Nd)   the ASCII digit of the same value
===========================================  ===========================================================

Decisions. *Digits of other scripts* (Arabic-Indic ``٣``, Devanagari ``३``, …) are accepted: a
character of category Nd has exactly one decimal value, so mapping it can never make two different
identifiers equal, and refusing it would only lose matches. *Other numeric characters* (category
No: superscripts ``²``, circled ``①``, fractions ``½``) are refused as ``bad_characters``: NFKC
would turn them into digits, but in a table they are footnote marks or list numbers, not digits of an
identifier. Chinese numerals (``一``, ``〇``) are not digits in Unicode's sense and stay as they are
(so the normaliser refuses them).

ASCII input is returned unchanged (one ``str.isascii`` call: the common case of 10⁷ values).
"""

from __future__ import annotations

import unicodedata

from psi._errors import InvalidIdentifier

__all__ = ["fold"]

_MINUS_SIGN = "\u2212"
_IDEOGRAPHIC_FULL_STOP = "\u3002"


def fold(key_type: str, raw: str) -> str:
    """The ASCII text a cell means (module docstring); ASCII input unchanged.

    Args:
        key_type: The identifier kind, named in a refusal.
        raw: The cell as found.

    Returns:
        The folded text (still to be normalised by the key type's rules).

    Raises:
        InvalidIdentifier: ``bad_characters`` for a numeric character that is not a decimal digit.
    """
    if raw.isascii():
        return raw
    kept = []
    for char in raw:
        category = unicodedata.category(char)
        if category == "No":
            raise InvalidIdentifier(key_type, "bad_characters")
        if category != "Cf":
            kept.append(char)
    return "".join(map(_ascii_sign, unicodedata.normalize("NFKC", "".join(kept))))


def _ascii_sign(char: str) -> str:
    """A dash, minus or full stop as its ASCII sign, a decimal digit as its ASCII digit, else ``char``."""
    if char.isascii():
        return char
    category = unicodedata.category(char)
    if category == "Nd":
        return str(unicodedata.decimal(char))
    if category == "Pd" or char == _MINUS_SIGN:
        return "-"
    return "." if char == _IDEOGRAPHIC_FULL_STOP else char
