"""Errors raised by the PSI library.

Tree::

    PsiError                       root of everything ``psi`` raises (a ``protocols.wire.errors.ProtocolError``)
    ├── InvalidIdentifier          a raw identifier failed normalisation (carries ``key_type`` and ``reason``)
    ├── InvalidPoint               bytes that are not a canonical ristretto255 encoding (carries ``index``)
    ├── PsiLocalError              we misused a session (start twice, result too early); also a LocalProtocolError
    ├── PsiRemoteError             the peer sent something invalid: wrong stage, bad chunk, bad point, oversize;
    │                              also a RemoteProtocolError, and names the ``stage`` it arrived in
    └── PsiCryptoError             a label failed to decrypt (opaque on purpose); also a CryptoError

``status_hint`` follows the protocol layer: 409 local, 400 remote, 403 crypto, 422 invalid identifier.
"""

from __future__ import annotations

from protocols.wire.errors import CryptoError, LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["InvalidIdentifier", "InvalidPoint", "PsiCryptoError", "PsiError", "PsiLocalError", "PsiRemoteError"]


class PsiError(ProtocolError):
    """Root of every error raised by the ``psi`` package."""


class InvalidIdentifier(PsiError, ValueError):
    """A raw identifier could not be normalised.

    Attributes:
        key_type: The identifier kind that was attempted (a ``KeyType`` value).
        reason: A short machine-readable reason, e.g. ``"bad_length"`` or ``"check_digit"``.
    """

    status_hint = 422

    def __init__(self, key_type: str, reason: str) -> None:
        super().__init__(f"invalid {key_type}: {reason}")
        self.key_type = key_type
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidIdentifier], tuple[str, str]]:
        return (InvalidIdentifier, (self.key_type, self.reason))


class InvalidPoint(PsiError, ValueError):
    """Bytes that do not decode to a valid ristretto255 element (or whose product is the identity).

    Attributes:
        index: Position of the first bad element in the batch, when known.
    """

    status_hint = 400

    def __init__(self, index: int | None = None) -> None:
        where = "" if index is None else f" at element {index}"
        super().__init__(f"invalid ristretto255 point encoding{where}")
        self.index = index

    def __reduce__(self) -> tuple[type[InvalidPoint], tuple[int | None]]:
        return (InvalidPoint, (self.index,))


class PsiLocalError(PsiError, LocalProtocolError):
    """The caller misused a session object (e.g. ``start()`` twice, ``result()`` before completion)."""

    status_hint = 409


class PsiRemoteError(PsiError, RemoteProtocolError):
    """The peer sent a message that is invalid in the session's current stage.

    Attributes:
        stage: Name of the stage the session was in when the message arrived.
    """

    status_hint = 400

    def __init__(self, message: str, *, stage: str) -> None:
        super().__init__(f"[stage {stage}] {message}")
        self.stage = stage
        self.detail = message

    def __reduce__(self) -> tuple[object, ...]:
        return (_remote_error, (self.detail, self.stage))


class PeerSetTooLarge(PsiError):
    """The peer's set is larger than this party agreed to match against (refused before any element is sent)."""

    status_hint = 409


class PsiCryptoError(PsiError, CryptoError):
    """A cryptographic check failed. Deliberately says nothing about which check."""

    status_hint = 403

    def __init__(self, message: str = "cryptographic verification failed") -> None:
        super().__init__(message)


def _remote_error(message: str, stage: str) -> PsiRemoteError:
    return PsiRemoteError(message, stage=stage)
