"""Node keys on disk: idempotent init, strict file modes, a certificate that says what it should."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509

from node.keys import init_keys, load_keys, tls_fingerprint
from protocols.crypto.sealing import SealContext, open_sealed, seal
from protocols.crypto.signing import verify_approval
from protocols.wire.errors import ConfigError


def test_init_is_idempotent_and_files_are_private(tmp_path):
    state = tmp_path / "bank"
    first = init_keys(state, "bank")
    files = {p.name: p.read_bytes() for p in state.iterdir()}
    second = init_keys(state, "bank")
    assert {p.name: p.read_bytes() for p in state.iterdir()} == files
    assert set(files) == {"signing.key", "sealing.key", "tls.key", "tls.crt"}
    assert second.signing.public_hex == first.signing.public_hex
    assert second.sealing_public_hex == first.sealing_public_hex
    assert second.tls_fingerprint == first.tls_fingerprint
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_loaded_keys_work(tmp_path):
    keys = load_keys(init_keys(tmp_path / "s", "bank").state_dir)
    digest = "ab" * 32
    verify_approval(keys.signing.public_hex, digest, keys.signing.sign_approval(digest))
    ad = SealContext(1, "bank", "bank", "self")
    assert open_sealed(keys.sealing, keys.sealing_public_hex, seal(keys.sealing, keys.sealing, b"m", ad), ad) == b"m"


def test_certificate_names_validity_and_fingerprint(tmp_path):
    keys = init_keys(tmp_path / "s", "telco", ["localhost", "127.0.0.1", "telco.example"])
    cert = x509.load_pem_x509_certificate(keys.tls_cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "telco.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=729) < life < dt.timedelta(days=731)
    assert cert.issuer == cert.subject
    assert tls_fingerprint(keys.tls_cert_pem) == keys.tls_fingerprint
    assert len(keys.tls_fingerprint) == 64


def test_missing_keys_say_run_init(tmp_path):
    with pytest.raises(ConfigError, match="run `init` first"):
        load_keys(tmp_path / "nothing")


def test_world_readable_key_is_refused(tmp_path):
    keys = init_keys(tmp_path / "s", "bank")
    (keys.state_dir / "signing.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_keys(keys.state_dir)
