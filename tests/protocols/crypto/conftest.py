import pytest

from protocols.crypto.paillier import Decryptor, Encryptor, generate_keypair


@pytest.fixture(scope="module")
def keys():
    """An encryptor and decryptor over one 512-bit test key (insecure; tests only)."""
    public_key, private_key = generate_keypair(512, allow_insecure_test_key=True)
    return (
        Encryptor(public_key, allow_insecure_test_key=True),
        Decryptor(private_key, allow_insecure_test_key=True),
    )
