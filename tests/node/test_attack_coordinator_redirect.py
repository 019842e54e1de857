"""Attack: a coordinator address (behind a proxy with the right certificate) answers with a redirect to plain http.

The node never follows it (the token would cross in clear), and it must not take the empty 3xx answer
for success either: before the fix ``healthz()``/POSTs returned as if the coordinator had accepted them.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from node.coordinator_client import CoordinatorClient, CoordinatorError
from tests.support.tls_coordinator import make_ca


def test_attack_an_https_to_http_redirect_is_refused_and_never_followed(tmp_path):
    files = make_ca(tmp_path / "ca", ["localhost"])
    plain = socket.create_server(("127.0.0.1", 0))  # where the redirect points: must never hear from the node
    plain.settimeout(0.5)
    plain_port = plain.getsockname()[1]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.cert), str(files.key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answer = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{plain_port}/api/v1/healthz\r\n"
              "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()

    def serve() -> None:
        for _ in range(2):
            raw, _ = listener.accept()
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    conn.recv(65536)
                    conn.sendall(answer)
            except (OSError, ssl.SSLError):
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with CoordinatorClient(f"https://localhost:{port}", "t" * 32, None, verify=str(files.ca)) as client:
            with pytest.raises(CoordinatorError, match=r"redirect.*COORDINATOR_URL") as caught:
                client.healthz()
            assert "t" * 32 not in str(caught.value)
        with pytest.raises(TimeoutError):
            plain.accept()  # nobody followed the redirect to plain http
    finally:
        listener.close()
        plain.close()


def test_a_coordinator_whose_database_is_down_is_unavailable_not_a_refusal():
    import httpx

    from node.coordinator_client import CoordinatorUnavailable

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "5"}, json={"detail": [
            {"field": None, "message": "the coordinator's database is unavailable; nothing was changed, retry in a "
                                       "few seconds", "fix": "retry after the Retry-After seconds"}]})

    with CoordinatorClient("http://127.0.0.1:9", "t", None, transport=httpx.MockTransport(answer)) as client, \
            pytest.raises(CoordinatorUnavailable) as raised:
        client.job(7)  # the runner keeps polling and a job's wait on the peer goes on: a restart is transient

    # the coordinator's {field, message, fix} read as one line, not its raw JSON
    assert str(raised.value) == ("the coordinator's database is unavailable; nothing was changed, retry in a few "
                                 "seconds (fix: retry after the Retry-After seconds)")
