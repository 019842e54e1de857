"""Keyed pseudonyms for federated scoring: how the telco finds a customer without seeing an identifier.

Both nodes derive the same per-model key from a static X25519 agreement between their registered
sealing keys (the keys ``protocols.crypto.sealing`` uses)::

    shared = X25519(own_sealing_priv, peer_sealing_pub)
    k      = HKDF-SHA256(shared, salt="tandem/scoring/v1", info=min(pub_a, pub_b) || max(...) || model_id)
    p(id)  = HMAC-SHA256(k, normalise("id_number", id))[:16]

What each party learns: the coordinator (and anyone on the path) sees neither the key nor, inside the
mutual-TLS channel, the pseudonyms; without ``k`` a pseudonym is not linkable to an identifier, not
even by hashing candidate identifiers (it is not a plain hash). The *telco* holds ``k`` and therefore
learns which of its own subscribers is being scored and when (it can pseudonymise its whole table);
for a customer who is not its subscriber it learns only that an unknown pseudonym was asked for, and
the bank gets the explicit outcome "no telco data". The bank can pseudonymise any identifier it holds.
Pseudonyms differ per model (``model_id`` in ``info``), so requests for different models do not link.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from Crypto.Hash import SHA256
from Crypto.Protocol import DH
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC

from protocols.crypto.sealing import sealing_public_key
from protocols.wire.control import KeyType
from protocols.wire.errors import CryptoError
from protocols.wire.scoring import PSEUDONYM_BYTES
from psi.identifiers import normalise

__all__ = ["SCORING_KEY_TYPE", "PseudonymKey", "derive_pseudonym_key"]

SCORING_KEY_TYPE = KeyType.ID_NUMBER
"""The identifier both parties pseudonymise for scoring."""

_SALT = b"tandem/scoring/v1"


class PseudonymKey:
    """The per-model HMAC key (secret: whoever holds it can test identifiers against pseudonyms)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise CryptoError()
        self._key = key

    def pseudonym(self, raw_id: str) -> bytes:
        """Pseudonym of one raw identifier (normalised first).

        Raises:
            ValueError: the identifier does not normalise (e.g. a bad check digit).
        """
        value = normalise(SCORING_KEY_TYPE, raw_id).encode("utf-8")
        return hmac.new(self._key, value, hashlib.sha256).digest()[:PSEUDONYM_BYTES]

    def try_pseudonym(self, raw_id: object) -> bytes | None:
        """Pseudonym of ``raw_id``, or ``None`` when it is missing or does not normalise."""
        if not isinstance(raw_id, str) or not raw_id.strip():
            return None
        try:
            return self.pseudonym(raw_id)
        except ValueError:
            return None

    def pseudonyms(self, raw_ids: Iterable[object]) -> list[bytes | None]:
        """:meth:`try_pseudonym` of each identifier, in order."""
        return [self.try_pseudonym(r) for r in raw_ids]


def derive_pseudonym_key(own_sealing: ECC.EccKey, peer_sealing_public: str | bytes, model_id: str) -> PseudonymKey:
    """The key both parties of ``model_id`` derive (see the module docstring).

    Args:
        own_sealing: this node's X25519 private sealing key.
        peer_sealing_public: the peer's registered public sealing key (hex or raw), from the registry.
        model_id: the model the pseudonyms are for.

    Raises:
        CryptoError: the peer key is malformed.
    """
    peer = sealing_public_key(peer_sealing_public)
    shared = bytes(DH.key_agreement(static_priv=own_sealing, static_pub=peer, kdf=lambda z: z))
    pubs = sorted([bytes(own_sealing.public_key().export_key(format="raw")), bytes(peer.export_key(format="raw"))])
    key = HKDF(shared, 32, _SALT, SHA256, context=pubs[0] + pubs[1] + model_id.encode("utf-8"))
    if not isinstance(key, bytes):
        raise CryptoError()
    return PseudonymKey(key)
