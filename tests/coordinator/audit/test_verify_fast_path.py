"""The verifier's orjson fast path accepts exactly the lines the json definition accepts, with the same values.

``coordinator.audit.chain._parse_line`` takes a line as canonical when ``orjson`` re-encodes it byte for
byte (and no float could be written differently by ``json``); otherwise ``_parse_line_strict`` (``json``
parse, ``canonical_json`` re-encode) judges it. For every line below, canonical or subtly not, both must
give the same parsed value or the same refusal message.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest

from coordinator.audit.chain import _parse_line, _parse_line_strict, _Tampered
from protocols.wire.canonical import canonical_json


def _outcome(parse: Any, line: bytes) -> tuple[str, Any]:
    try:
        obj, data = parse(line, 7)
    except _Tampered as bad:
        return "refused", bad.reason
    return "accepted", (json.dumps(obj, sort_keys=True), type(obj).__name__, data)


def _both(line: bytes) -> tuple[str, Any]:
    fast, strict = _outcome(_parse_line, line), _outcome(_parse_line_strict, line.rstrip(b"\n"))
    assert fast == strict, line
    return fast


def _random_floats(count: int) -> list[float]:
    rng = random.Random(11)
    values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(count)]
    values += [rng.random() * 10.0 ** e * sign for e in range(-320, 308) for sign in (1, -1)]
    values += [10.0 ** e for e in range(-20, 22)] + [1.5e-5, 1e-4, 9.999e-5, 1e16, 9999999999999998.0, -0.0, 0.0]
    return [v for v in values if math.isfinite(v)]


def _float_lines(value: float) -> list[bytes]:
    """The canonical line holding ``value`` and the other ways a writer could spell the same number."""
    canonical = canonical_json({"details": {"x": value}})
    spellings = {repr(value), f"{value:.17g}", f"{value:f}", f"{value:e}", repr(value).replace("e-0", "e-"),
                 repr(value).replace("e+", "e"), repr(value).upper()}
    return [canonical] + [b'{"details":{"x":' + s.encode() + b"}}" for s in spellings if s != repr(value)]


def test_floats_of_every_magnitude_get_the_json_verdict() -> None:
    accepted = 0
    for value in _random_floats(20_000):
        for line in _float_lines(value):
            accepted += _both(line)[0] == "accepted"
    assert accepted >= 20_000  # every canonical line at least


@pytest.mark.parametrize("line", [
    b'{"a":1,"b":2}', b'{"b":2,"a":1}', b'{"a": 1}', b'{"a":1,"a":2}', b'{"a":1}\n', b'{"a":1}\r\n',
    b'{"s":"\\u001f\\b\\f\\n\\r\\t\\"\\\\"}', b'{"s":"\\u001F"}', b'{"s":"\\/"}', b'{"s":"\x7f"}', b'{"s":"\\u007f"}',
    '{"s":"é\u2028😀"}'.encode(), b'{"s":"\\u00e9"}', b'{"s":"\\ud800"}', b'{"s":"\\ud83d\\ude00"}',
    b'{"s":"\xff"}', b'{"s":"\xed\xa0\x80"}', b'{"n":18446744073709551616}', b'{"n":-9223372036854775809}',
    b'{"n":9223372036854775807}', b'{"n":-0}', b'{"n":1.0}', b'{"n":1.50}', b'{"n":1E+16}', b'{"n":NaN}',
    b'{"n":Infinity}', b'{"n":1e400}', b'[1,2]', b'"text"', b"0.00001", b"1e-05", b"", b"{", b"null",
    b'{"\xc3\xa9":1,"z":2}', b'{"z":2,"\xc3\xa9":1}', b'{"\xf0\x9f\x98\x80":1,"\xef\xbf\xbf":2}',
    b'{"\xef\xbf\xbf":2,"\xf0\x9f\x98\x80":1}', b"[" * 2000 + b"]" * 2000, b"[" * 100_000 + b"]" * 100_000,
])
def test_edge_lines_get_the_json_verdict(line: bytes) -> None:
    _both(line)


def test_a_real_record_line_takes_the_fast_path_and_a_reencoded_one_is_refused() -> None:
    record = {"seq": 3, "ts": "2025-01-01T00:00:00+00:00", "prev_hash": "0" * 64, "hash": "a" * 64,
              "body": {"actor": "user:é", "action": "job.progress", "object": "job:1",
                       "details": {"fraction": 0.25, "tiny": 1.5e-05, "stage": "pre-psi"}}}
    line = canonical_json(record)
    assert _both(line) == ("accepted", (json.dumps(record, sort_keys=True), "dict", line))
    assert _both(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()) == \
        ("refused", "line 7: not in canonical form (edited or re-encoded)")  # ensure_ascii re-encoding
