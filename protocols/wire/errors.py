"""Root of every error the shared protocol layer raises.

Tree::

    ProtocolError
    ├── LocalProtocolError      we misused an API or hit a wrong stage ourselves
    ├── RemoteProtocolError     the peer sent something malformed, out of stage or unauthentic
    ├── CryptoError             a signature, MAC or decryption failed (opaque on purpose)
    └── ConfigError             settings or keys are missing or unacceptable

Each error carries ``status_hint``: the HTTP status a service should map it to.
"""

from __future__ import annotations

__all__ = ["ConfigError", "CryptoError", "LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of the protocol layer's errors."""

    status_hint: int = 400

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        if status_hint is not None:
            self.status_hint = status_hint


class LocalProtocolError(ProtocolError):
    """We used a protocol object wrongly (e.g. a message in the wrong stage)."""

    status_hint = 409


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid."""

    status_hint = 400


class CryptoError(ProtocolError):
    """A cryptographic check failed. Deliberately says nothing about which check."""

    status_hint = 403

    def __init__(self, message: str = "cryptographic verification failed") -> None:
        super().__init__(message)


class ConfigError(ProtocolError):
    """Settings, keys or files are missing or unacceptable."""

    status_hint = 500
