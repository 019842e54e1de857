"""Shared by the wire-capture tests: every form in which an identifier could leak, and a fast search.

An identifier counts as leaked if any of its forms appears in captured bytes: the raw value, its
normalised form, separator/case variants, and the SHA-256, SHA-1 and MD5 of each (raw digest and
lower/upper hex). The search is Aho-Corasick over bytes read as latin-1 text (one code point per byte
both ways), so tens of thousands of needles against megabytes of capture take seconds.

Every leak test calls :func:`search` over its capture, and its planted-leak twin calls the same
function over the same capture with a leak spliced into it (:func:`plant`), so the twin fails if
the search stops finding what the leak test relies on it to find.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import ahocorasick

from protocols.wire.control import KeyType
from psi import InvalidIdentifier, normalise

IDENTIFIER_COLUMNS = {"id_number": KeyType.ID_NUMBER, "imei": KeyType.IMEI, "idfa": KeyType.IDFA,
                      "mac": KeyType.MAC, "msisdn": KeyType.MOBILE, "mobile": KeyType.MOBILE,
                      "customer_id": KeyType.CUSTOMER_ID}


def identifier_forms(column: str, raw: str) -> set[str]:
    """The raw value, its normalised form and the usual formatting variants."""
    forms = {raw}
    try:
        forms.add(normalise(IDENTIFIER_COLUMNS[column], raw))
    except InvalidIdentifier:
        pass
    if column == "mac":
        forms |= {raw.replace(":", ""), raw.replace(":", "-"), raw.upper()}
    if column == "idfa":
        forms |= {raw.lower(), raw.replace("-", "")}
    if column in ("msisdn", "mobile"):
        forms |= {"+86" + raw, "86" + raw}
    return forms


def with_hashes(forms: Iterable[str]) -> set[bytes]:
    """Each form's bytes plus its SHA-256, SHA-1 and MD5 (raw, lower hex, upper hex)."""
    out: set[bytes] = set()
    for form in forms:
        raw = form.encode()
        out.add(raw)
        for algo in (hashlib.sha256, hashlib.sha1, hashlib.md5):
            digest = algo(raw)
            out |= {digest.digest(), digest.hexdigest().encode(), digest.hexdigest().upper().encode()}
    return out


class Needles:
    """A set of byte strings to look for, each with a description for the failure message."""

    def __init__(self, needles: Mapping[bytes, str]) -> None:
        """Build the automaton once."""
        self.count = len(needles)
        self._automaton = ahocorasick.Automaton()
        for needle, what in needles.items():
            self._automaton.add_word(needle.decode("latin-1"), what)
        self._automaton.make_automaton()

    def find(self, blob: bytes) -> list[str]:
        """Descriptions of every needle occurring in ``blob``."""
        return [what for _, what in self._automaton.iter(blob.decode("latin-1"))]


def search(needles: Needles, capture: Iterable[tuple[str, bytes]]) -> list[str]:
    """Every needle found in a capture of ``(name, payload)`` pairs, as ``"name: description"``."""
    return [f"{name}: {what}" for name, blob in capture for what in needles.find(blob)]


def plant(capture: Sequence[tuple[str, bytes]], leaks: Sequence[bytes]) -> list[tuple[str, bytes]]:
    """The capture with ``leaks`` spliced into the middle of its largest payload (nothing else changed)."""
    index = max(range(len(capture)), key=lambda i: len(capture[i][1]))
    name, blob = capture[index]
    middle = len(blob) // 2
    planted = blob[:middle] + b"".join(leaks) + blob[middle:]
    return [*capture[:index], (name, planted), *capture[index + 1 :]]
