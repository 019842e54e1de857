"""Paillier key generation and key-size policy.

Keys are plain ``phe`` objects so that every value interoperates with ``phe``. Tandem refuses moduli
shorter than :data:`MIN_KEY_BITS` (NIST SP 800-57: 2048-bit factoring moduli give about 112 bits of
security) unless the caller sets the explicit, test-only ``allow_insecure_test_key`` flag.
"""

from __future__ import annotations

import phe

from protocols.wire.errors import ConfigError

__all__ = ["MIN_KEY_BITS", "check_key_size", "generate_keypair"]

MIN_KEY_BITS = 2048
"""Shortest modulus accepted outside tests."""

_TEST_FLOOR_BITS = 64
"""Even with the test flag, ``generate_keypair`` needs two distinct primes of at least 32 bits."""


def check_key_size(public_key: phe.PaillierPublicKey, *, allow_insecure_test_key: bool = False) -> None:
    """Refuse a modulus shorter than :data:`MIN_KEY_BITS` unless the test-only flag is set.

    Call this on every public key that arrives from a peer: a short key lets anyone factor ``n``
    and read every ciphertext made under it.

    Args:
        public_key: the key to check.
        allow_insecure_test_key: accept short keys. Tests only: a short key is trivially broken.

    Raises:
        ConfigError: the key is too short and the flag is not set.
    """
    bits = int(public_key.n).bit_length()
    if bits < MIN_KEY_BITS and not allow_insecure_test_key:
        raise ConfigError(
            f"Paillier modulus of {bits} bits refused: use at least {MIN_KEY_BITS} bits "
            "(pass allow_insecure_test_key=True only in tests)"
        )


def generate_keypair(
    bits: int = MIN_KEY_BITS, *, allow_insecure_test_key: bool = False
) -> tuple[phe.PaillierPublicKey, phe.PaillierPrivateKey]:
    """Generate a fresh Paillier key pair with an exactly ``bits``-bit modulus.

    Args:
        bits: modulus length; at least :data:`MIN_KEY_BITS`.
        allow_insecure_test_key: permit ``bits < MIN_KEY_BITS`` (down to 64). Tests only: such a key
            can be factored in seconds to hours, which reveals every plaintext.

    Returns:
        ``(public_key, private_key)`` as ``phe`` objects.

    Raises:
        ConfigError: ``bits`` is too short without the flag, below 64, or odd.
    """
    if bits < MIN_KEY_BITS and not allow_insecure_test_key:
        raise ConfigError(
            f"refusing to generate a {bits}-bit Paillier key: use bits >= {MIN_KEY_BITS} "
            "(allow_insecure_test_key=True is for tests only)"
        )
    if bits < _TEST_FLOOR_BITS or bits % 2:
        raise ConfigError(f"Paillier key size must be even and at least {_TEST_FLOOR_BITS} bits, got {bits}")
    public_key, private_key = phe.generate_paillier_keypair(n_length=bits)
    return public_key, private_key
