"""Ed25519 signing against RFC 8032's test vector, and across the two libraries the module uses.

``SigningKey.sign`` runs through OpenSSL (``cryptography``) while keys and verification are pycryptodome's;
Ed25519 is deterministic, so both must produce the vector's signature byte for byte.
"""

from __future__ import annotations

import pytest
from Crypto.Signature import eddsa

from protocols.crypto.signing import SigningKey, verify_signature
from protocols.wire.errors import CryptoError

# RFC 8032 section 7.1, TEST 1 (empty message)
SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
SIGNATURE = ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
             "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")


def test_sign_makes_the_rfc_8032_signature() -> None:
    key = SigningKey.from_seed(bytes.fromhex(SEED))
    assert key.public_hex == PUBLIC
    assert key.sign(b"") == SIGNATURE
    verify_signature(PUBLIC, b"", SIGNATURE)


def test_openssl_and_pycryptodome_sign_alike() -> None:
    key = SigningKey.generate()
    message = b"tandem/head\x00" + bytes(range(200))
    reference = bytes(eddsa.new(eddsa.import_private_key(key.seed()), "rfc8032").sign(message)).hex()
    assert key.sign(message) == reference
    verify_signature(key.public_hex, message, key.sign(message))
    with pytest.raises(CryptoError):
        verify_signature(key.public_hex, message + b"!", key.sign(message))
