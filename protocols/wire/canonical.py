"""Canonical JSON and digests: the one way Tandem turns data into bytes before hashing or signing.

Every hash chain (audit log, egress ledger), every job digest and every signature is computed over
``canonical_json``: UTF-8, keys sorted, no insignificant whitespace, no NaN. Two processes that agree
on the data therefore agree on the bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "sha256_hex"]


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
