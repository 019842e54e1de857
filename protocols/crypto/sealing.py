"""Sealed envelopes: bank↔telco payloads that must cross a third party (the arbiter) unread.

Parties: a *sender* and a *receiver*, each holding a static X25519 key registered with the coordinator
(``PartyCreate.sealing_key``). The relay (e.g. the Flower ServerApp acting as arbiter) carries the
blob and learns only its length.

Construction (version 1)::

    shared = X25519(sender_priv, receiver_pub)                      # static-static
    key    = HKDF-SHA256(shared, salt=random 16 B,
                         info="tandem/sealed/v1" || sender_pub || receiver_pub)
    blob   = 0x01 || salt || nonce (12 B random) || AES-256-GCM(key, nonce, plaintext, ad) || tag (16 B)

The associated data is ``canonical_json({job_id, sender, receiver, step})``: a blob replayed into
another job, another step, or with the parties' names swapped fails to open. A fresh salt per message
gives a fresh AES key, so the static-static secret never encrypts twice under one key.

What each party learns: the receiver learns the plaintext and that it came from the holder of the
sender's key; the relay learns the blob's size. Threat model: the relay may read, drop, replay or
tamper with blobs; tampering and cross-context replay are detected (opening raises ``CryptoError``),
drops are not (the protocol layer above counts steps). No forward secrecy: whoever later steals a
party's static key can open past blobs addressed to or sent by it.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.Protocol import DH
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC

from protocols.wire.canonical import canonical_json
from protocols.wire.errors import CryptoError

__all__ = [
    "SEAL_VERSION",
    "SealContext",
    "generate_sealing_key",
    "open_sealed",
    "seal",
    "sealing_private_key",
    "sealing_public_hex",
    "sealing_public_key",
]

SEAL_VERSION = 1
_INFO = b"tandem/sealed/v1"
_SALT_LEN = 16
_NONCE_LEN = 12
_TAG_LEN = 16
_HEADER_LEN = 1 + _SALT_LEN + _NONCE_LEN


@dataclass(frozen=True)
class SealContext:
    """The associated data a sealed blob is bound to."""

    job_id: int
    sender: str
    receiver: str
    step: str

    def to_bytes(self) -> bytes:
        """Canonical bytes authenticated (not encrypted) alongside the plaintext."""
        return canonical_json(asdict(self))


def generate_sealing_key() -> ECC.EccKey:
    """A fresh random X25519 private key."""
    return ECC.generate(curve="curve25519")


def sealing_private_key(seed: bytes) -> ECC.EccKey:
    """Load an X25519 private key from its 32 raw bytes (secret: whoever holds it opens the party's mail)."""
    try:
        return DH.import_x25519_private_key(seed)
    except ValueError as exc:
        raise CryptoError() from exc


def sealing_public_key(key: ECC.EccKey | str | bytes) -> ECC.EccKey:
    """Normalise a public key given as a key object, 32 raw bytes or 64 hex characters."""
    if isinstance(key, ECC.EccKey):
        return key.public_key()
    try:
        raw = bytes.fromhex(key) if isinstance(key, str) else key
        return DH.import_x25519_public_key(raw)
    except ValueError as exc:
        raise CryptoError() from exc


def sealing_public_hex(key: ECC.EccKey) -> str:
    """Raw X25519 public key as 64 lowercase hex characters, as registered with the coordinator."""
    return bytes(key.public_key().export_key(format="raw")).hex()


def _derive_key(
    own_priv: ECC.EccKey, other_pub: ECC.EccKey, salt: bytes, sender_pub: bytes, receiver_pub: bytes
) -> bytes:
    shared = bytes(DH.key_agreement(static_priv=own_priv, static_pub=other_pub, kdf=lambda z: z))
    key = HKDF(shared, 32, salt, SHA256, context=_INFO + sender_pub + receiver_pub)
    if not isinstance(key, bytes):  # one key requested, so HKDF returns bytes, not a tuple
        raise CryptoError()
    return key


def _raw(key: ECC.EccKey) -> bytes:
    return bytes(key.public_key().export_key(format="raw"))


def seal(sender_key: ECC.EccKey, receiver_pub: ECC.EccKey | str | bytes, plaintext: bytes, ad: SealContext) -> bytes:
    """Encrypt and authenticate ``plaintext`` for ``receiver_pub``, bound to ``ad``.

    Args:
        sender_key: the sender's X25519 *private* key.
        receiver_pub: the receiver's X25519 public key (take it from the coordinator's registry).
        plaintext: bytes to seal.
        ad: job id, sender, receiver and step the blob is bound to.

    Returns:
        The sealed blob (version byte, salt, nonce, ciphertext, tag).

    Raises:
        CryptoError: if a key is unusable.
    """
    if not sender_key.has_private():
        raise CryptoError()
    receiver = sealing_public_key(receiver_pub)
    salt, nonce = secrets.token_bytes(_SALT_LEN), secrets.token_bytes(_NONCE_LEN)
    try:
        key = _derive_key(sender_key, receiver, salt, _raw(sender_key), _raw(receiver))
    except ValueError as exc:
        raise CryptoError() from exc
    cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_LEN)
    cipher.update(bytes([SEAL_VERSION]) + ad.to_bytes())
    ciphertext, tag = cipher.encrypt_and_digest(plaintext)
    return bytes([SEAL_VERSION]) + salt + nonce + ciphertext + tag


def open_sealed(receiver_key: ECC.EccKey, sender_pub: ECC.EccKey | str | bytes, blob: bytes, ad: SealContext) -> bytes:
    """Open a blob made by ``seal``.

    Raises:
        CryptoError: on any failure (wrong key, wrong associated data, tampering, truncation, bad
            version). The error deliberately does not say which.
    """
    try:
        if not receiver_key.has_private() or len(blob) < _HEADER_LEN + _TAG_LEN or blob[0] != SEAL_VERSION:
            raise ValueError("malformed")
        sender = sealing_public_key(sender_pub)
        salt, nonce = blob[1 : 1 + _SALT_LEN], blob[1 + _SALT_LEN : _HEADER_LEN]
        key = _derive_key(receiver_key, sender, salt, _raw(sender), _raw(receiver_key))
        cipher = AES.new(key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_LEN)
        cipher.update(bytes([SEAL_VERSION]) + ad.to_bytes())
        return bytes(cipher.decrypt_and_verify(blob[_HEADER_LEN:-_TAG_LEN], blob[-_TAG_LEN:]))
    except (ValueError, KeyError, TypeError, CryptoError) as exc:
        raise CryptoError() from exc
