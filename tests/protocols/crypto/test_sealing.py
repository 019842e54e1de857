"""Sealed envelopes: round trip, and every failure is the same opaque CryptoError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.crypto.sealing import (
    SealContext,
    generate_sealing_key,
    open_sealed,
    seal,
    sealing_private_key,
    sealing_public_hex,
)
from protocols.wire.errors import CryptoError

BANK, TELCO = generate_sealing_key(), generate_sealing_key()
AD = SealContext(job_id=7, sender="bank", receiver="telco", step="lr.gradient.3")


def test_round_trip_with_hex_public_keys():
    blob = seal(BANK, sealing_public_hex(TELCO), b"masked gradient", AD)
    assert open_sealed(TELCO, sealing_public_hex(BANK), blob, AD) == b"masked gradient"


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=2048))
def test_round_trip_property(plaintext):
    blob = seal(BANK, TELCO.public_key(), plaintext, AD)
    assert len(blob) == 1 + 16 + 12 + len(plaintext) + 16
    assert open_sealed(TELCO, BANK.public_key(), blob, AD) == plaintext


def test_same_plaintext_seals_differently():
    assert seal(BANK, TELCO, b"x", AD) != seal(BANK, TELCO, b"x", AD)


def test_private_key_reloads_from_seed():
    again = sealing_private_key(bytes(TELCO.seed))
    assert open_sealed(again, BANK, seal(BANK, TELCO, b"y", AD), AD) == b"y"


@pytest.mark.parametrize(
    "other",
    [
        SealContext(8, "bank", "telco", "lr.gradient.3"),
        SealContext(7, "telco", "bank", "lr.gradient.3"),
        SealContext(7, "bank", "telco", "lr.gradient.4"),
    ],
)
def test_wrong_associated_data_fails(other):
    blob = seal(BANK, TELCO, b"secret", AD)
    with pytest.raises(CryptoError) as err:
        open_sealed(TELCO, BANK, blob, other)
    assert str(err.value) == "cryptographic verification failed"


@pytest.mark.parametrize("position", [0, 5, 20, 30, -1])
def test_tampering_anywhere_fails(position):
    blob = bytearray(seal(BANK, TELCO, b"secret payload", AD))
    blob[position] ^= 0x01
    with pytest.raises(CryptoError):
        open_sealed(TELCO, BANK, bytes(blob), AD)


def test_truncated_blob_fails():
    blob = seal(BANK, TELCO, b"secret", AD)
    for cut in (0, 10, len(blob) - 1):
        with pytest.raises(CryptoError):
            open_sealed(TELCO, BANK, blob[:cut], AD)


def test_wrong_keys_fail():
    eve = generate_sealing_key()
    blob = seal(BANK, TELCO, b"secret", AD)
    with pytest.raises(CryptoError):
        open_sealed(eve, BANK, blob, AD)  # not the receiver
    with pytest.raises(CryptoError):
        open_sealed(TELCO, eve, blob, AD)  # claimed sender is someone else
    with pytest.raises(CryptoError):
        open_sealed(TELCO, BANK, seal(eve, TELCO, b"forged", AD), AD)  # sealed by eve, claimed from bank


def test_malformed_public_key_and_public_only_sender_fail():
    with pytest.raises(CryptoError):
        seal(BANK, "00" * 32, b"x", AD)
    with pytest.raises(CryptoError):
        seal(BANK.public_key(), TELCO, b"x", AD)
