"""The coordinator's own Ed25519 key, which signs the audit-chain head.

The seed lives in a file readable only by its owner (mode 0600). It is created on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from protocols.crypto.signing import SigningKey
from protocols.wire.errors import ConfigError

__all__ = ["load_or_create_signing_key"]

SEED_BYTES = 32


def load_or_create_signing_key(path: Path) -> SigningKey:
    """Load the 32-byte seed at ``path``, creating it with mode 0600 if it does not exist.

    Raises:
        ConfigError: if the file exists but does not hold exactly 32 bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load(path)
    key = SigningKey.generate()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.seed())
    return key


def _load(path: Path) -> SigningKey:
    seed = path.read_bytes()
    if len(seed) != SEED_BYTES:
        raise ConfigError(f"signing key file {path} must hold exactly {SEED_BYTES} bytes, found {len(seed)}")
    return SigningKey.from_seed(seed)
