"""Canonical JSON and digests: the one way Tandem turns data into bytes before hashing or signing.

Every hash chain (audit log, egress ledger), every job digest and every signature is computed over
``canonical_json``: UTF-8, keys sorted, no insignificant whitespace, no NaN. Two processes that agree
on the data therefore agree on the bytes.

``check_json_bounds`` is the one bound on free-form JSON a party accepts from another (a node's job
outputs, say): nesting depth is measured without recursion, so a value nested 10,000 deep is refused with
a message naming the limit instead of exhausting the interpreter's stack further down.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "check_json_bounds", "json_depth", "sha256_hex"]


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON bytes (sorted keys, compact separators, UTF-8).

    Raises:
        ValueError: if ``obj`` holds NaN or infinity, which have no canonical JSON form.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_depth(value: Any, *, stop_after: int) -> int:
    """Nesting depth of ``value`` (a scalar is 0, ``[]`` and ``{}`` are 1), counted without recursion.

    Stops counting once the depth exceeds ``stop_after`` and returns ``stop_after + 1``, so the cost of
    checking a hostile value is bounded by what the limit allows.
    """
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list, tuple)):
            continue
        depth += 1
        if depth > stop_after:
            return stop_after + 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_json_bounds(value: Any, *, max_depth: int, max_bytes: int) -> int:
    """Check that ``value`` nests at most ``max_depth`` deep and encodes to at most ``max_bytes``; return its size.

    Raises:
        ValueError: naming the limit that was exceeded (or NaN/infinity, which JSON cannot carry).
    """
    if json_depth(value, stop_after=max_depth) > max_depth:
        raise ValueError(f"nested more than {max_depth} levels deep; flatten it to at most {max_depth} levels")
    size = len(canonical_json(value))
    if size > max_bytes:
        raise ValueError(f"takes {size} bytes as JSON, more than the limit of {max_bytes}; send aggregates only")
    return size
