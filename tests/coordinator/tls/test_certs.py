"""``tandem-coordinator certs``: a private CA created once, server certificates it signs, files a node trusts."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading

from cryptography import x509
from typer.testing import CliRunner

from coordinator import certs
from coordinator.cli import app
from coordinator.flower.launcher import TrainingSettings

runner = CliRunner()


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output + (str(result.exception) if result.exception else "")


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_the_ca_once_and_a_second_run_changes_nothing(tmp_path):
    ca = tmp_path / "ca"
    code, out = _cli("certs", "init", "--dir", str(ca))
    assert code == 0 and "CA created" in out
    before = {p.name: p.read_bytes() for p in ca.iterdir()}
    assert set(before) == {"ca.crt", "ca.key"}
    assert _mode(ca / "ca.key") == 0o600 and _mode(ca) == 0o700

    code, out = _cli("certs", "init", "--dir", str(ca))

    assert code == 0 and "nothing changed" in out
    assert {p.name: p.read_bytes() for p in ca.iterdir()} == before


def test_issue_writes_a_certificate_the_ca_signed_for_every_name(tmp_path):
    ca = tmp_path / "ca"
    _cli("certs", "init", "--dir", str(ca))

    code, out = _cli("certs", "issue", "--dir", str(ca), "--name", "coordinator", "--name", "10.0.0.5",
                     "--out", str(tmp_path / "coordinator"))

    assert code == 0, out
    cert = x509.load_pem_x509_certificate((tmp_path / "coordinator.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["coordinator"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert _mode(tmp_path / "coordinator.key") == 0o600
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "coordinator.crt", tmp_path / "coordinator.key")  # key and cert are a pair


def test_issue_refuses_to_overwrite_without_force_and_rotates_with_it(tmp_path):
    ca = tmp_path / "ca"
    _cli("certs", "init", "--dir", str(ca))
    args = ("certs", "issue", "--dir", str(ca), "--name", "coordinator", "--out", str(tmp_path / "c"))
    assert _cli(*args)[0] == 0
    first = (tmp_path / "c.crt").read_bytes()

    code, out = _cli(*args)
    assert code != 0 and "--force" in out and (tmp_path / "c.crt").read_bytes() == first

    assert _cli(*args, "--force")[0] == 0
    assert (tmp_path / "c.crt").read_bytes() != first


def test_issue_without_a_ca_names_certs_init_and_writes_nothing(tmp_path):
    code, out = _cli("certs", "issue", "--dir", str(tmp_path / "none"), "--name", "x", "--out", str(tmp_path / "c"))
    assert code != 0 and "certs init --dir" in out
    assert list(tmp_path.iterdir()) == []


def test_a_half_ca_is_refused_not_replaced(tmp_path):
    ca = tmp_path / "ca"
    _cli("certs", "init", "--dir", str(ca))
    (ca / "ca.key").unlink()
    cert = (ca / "ca.crt").read_bytes()

    code, out = _cli("certs", "init", "--dir", str(ca))

    assert code != 0 and "ca.key is missing" in out
    assert (ca / "ca.crt").read_bytes() == cert and not (ca / "ca.key").exists()


def test_a_bad_name_is_refused_naming_the_option(tmp_path):
    ca = tmp_path / "ca"
    _cli("certs", "init", "--dir", str(ca))
    code, out = _cli("certs", "issue", "--dir", str(ca), "--name", "not a host", "--out", str(tmp_path / "c"))
    assert code != 0 and "--name 'not a host'" in out
    assert not (tmp_path / "c.crt").exists() and not (tmp_path / "c.key").exists()


def test_a_certificate_never_outlives_its_ca(tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    certs.init_ca(tmp_path / "ca", days=10)
    files = certs.issue(tmp_path / "ca", ["coordinator"], tmp_path / "c", days=3650)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert cert.not_valid_after_utc <= now + datetime.timedelta(days=10, minutes=1)


def test_the_superlink_takes_the_same_helper_s_files(tmp_path, monkeypatch):
    ca = tmp_path / "ca"
    _cli("certs", "init", "--dir", str(ca))
    _cli("certs", "issue", "--dir", str(ca), "--name", "superlink", "--out", str(ca / "superlink"))
    monkeypatch.setenv("TANDEM_COORD_TRAINING_TLS_CA", str(ca / "ca.crt"))
    monkeypatch.setenv("TANDEM_COORD_TRAINING_TLS_CERT", str(ca / "superlink.crt"))
    monkeypatch.setenv("TANDEM_COORD_TRAINING_TLS_KEY", str(ca / "superlink.key"))
    settings = TrainingSettings()
    assert settings.tls_ca and settings.tls_cert and settings.tls_key
    client = ssl.create_default_context(cafile=settings.tls_ca)  # what a SuperNode's gRPC channel verifies
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(settings.tls_cert, settings.tls_key)
    a, b = socket.socketpair()
    done = []
    t = threading.Thread(target=lambda: done.append(server.wrap_socket(b, server_side=True)))
    t.start()
    tls = client.wrap_socket(a, server_hostname="superlink")
    t.join(10)
    assert tls.version() == "TLSv1.3" and done

