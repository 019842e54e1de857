"""Fast Paillier on ``phe`` key and number types: DJN encryption, shared-exponent vectors, CRT, packing.

Safe layer (this package's exports) over a hazardous layer (:mod:`protocols.crypto.paillier._primitives`).

- :func:`generate_keypair` makes ``phe`` keys and refuses moduli under 2048 bits outside tests.
- :class:`Encryptor` encrypts with DJN short-exponent obfuscation from a fixed-base table
  (security assumption in :mod:`protocols.crypto.paillier._encryptor`).
- :class:`EncryptedVector` holds ciphertexts with one shared fixed-point exponent and supports
  addition, plaintext multiplication, dot products with plaintext matrices and sums.
- :class:`Decryptor` decrypts with the Chinese remainder theorem.
- :class:`PackingScheme` packs several fixed-point slots into one plaintext.
- :class:`ParallelPaillier` spreads large batches over worker processes.

Ciphertexts are interchangeable with ``phe``: ``EncryptedVector.to_encrypted_numbers`` and
``from_encrypted_numbers`` convert both ways. The wire format lives in
:mod:`protocols.crypto.paillier.codec`.
"""

from protocols.crypto.paillier._decryptor import Decryptor
from protocols.crypto.paillier._encoding import DEFAULT_FLOAT_EXPONENT, decode_mantissas, signed_mantissas
from protocols.crypto.paillier._encryptor import DEFAULT_DJN_EXPONENT_BITS, MIN_DJN_EXPONENT_BITS, Encryptor
from protocols.crypto.paillier._keys import MIN_KEY_BITS, check_key_size, generate_keypair
from protocols.crypto.paillier._packing import PackingScheme
from protocols.crypto.paillier._parallel import DEFAULT_PARALLEL_THRESHOLD, ParallelPaillier
from protocols.crypto.paillier._recipes import decrypt_vector, encrypt_vector
from protocols.crypto.paillier._vector import EncryptedVector

__all__ = [
    "DEFAULT_DJN_EXPONENT_BITS",
    "DEFAULT_FLOAT_EXPONENT",
    "DEFAULT_PARALLEL_THRESHOLD",
    "MIN_DJN_EXPONENT_BITS",
    "MIN_KEY_BITS",
    "Decryptor",
    "EncryptedVector",
    "Encryptor",
    "PackingScheme",
    "ParallelPaillier",
    "check_key_size",
    "decode_mantissas",
    "decrypt_vector",
    "encrypt_vector",
    "generate_keypair",
    "signed_mantissas",
]
