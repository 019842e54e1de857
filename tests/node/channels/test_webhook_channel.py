"""The webhook channel against a real local HTTP server that verifies every signature."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from node.channels import ChannelDownError, ChannelSettings, DeliveryJournal, deliver, verify_signature
from node.channels._webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER

SECRET = "whsec-4f1c9a7e2b"
AUDIENCE = [f"1590000{i:04d}" for i in range(6)]


@dataclass
class Endpoint:
    """What the gateway saw: accepted messages by idempotency key, refused signatures, requests in all."""

    url: str = ""
    accepted: dict[str, dict[str, str]] = field(default_factory=dict)
    bad_signatures: int = 0
    requests: int = 0
    fail_first: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    seen = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify_signature(SECRET.encode(), self.headers[TIMESTAMP_HEADER], body, self.headers[SIGNATURE_HEADER])
            key = self.headers["Idempotency-Key"]
            with seen.lock:
                seen.requests += 1
                if not ok:
                    seen.bad_signatures += 1
                    status = 401
                elif key in seen.fail_first:
                    seen.fail_first.discard(key)
                    status = 503  # a transient failure: retried under the same key
                else:
                    seen.accepted.setdefault(key, json.loads(body))
                    status = 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"id": f"gw-{key}"}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.url = f"http://127.0.0.1:{server.server_address[1]}/push"
    yield seen
    server.shutdown()
    server.server_close()


def _settings(tmp_path, url: str, secret: str = SECRET) -> ChannelSettings:
    path = tmp_path / "webhook-secret"
    path.write_text(secret)
    return ChannelSettings(kind="webhook", webhook_url=url, webhook_secret_file=path, quiet_hours="",
                           rate_per_s=1000.0, receipt_wait_s=0.0, optout_path=None)


def test_webhook_posts_signed_messages_once_each_and_retries_under_the_same_key(tmp_path, state_dir, endpoint, noon):
    (state_dir / "optout.txt").write_text(AUDIENCE[4] + "\n")
    settings = _settings(tmp_path, endpoint.url)
    journal = DeliveryJournal(state_dir)
    endpoint.fail_first.add(f"51-{journal.digest(AUDIENCE[0])[:20]}")  # the message id of the first recipient
    journal.close()
    report = deliver("51", AUDIENCE, "{bank_name}: open the app {app_link} {optout}", state_dir=state_dir,
                     values={"bank_name": "Example Bank", "app_link": "https://b.example/a"},
                     channel_settings=settings, clock=noon)
    assert endpoint.bad_signatures == 0
    assert sorted(m["recipient"] for m in endpoint.accepted.values()) == sorted(set(AUDIENCE) - {AUDIENCE[4]})
    text = "Example Bank: open the app https://b.example/a 拒收请回复R"
    assert {m["text"] for m in endpoint.accepted.values()} == {text}
    assert endpoint.requests == 6  # five messages, one of them retried after a 503
    assert report.counts.sent_now == 5 and report.counts.opted_out == 1 and report.counts.failed == 0
    assert noon.slept  # the back-off waited on the injected clock

    again = deliver("51", AUDIENCE, "{bank_name}: open the app {app_link} {optout}", state_dir=state_dir,
                    values={"bank_name": "Example Bank", "app_link": "https://b.example/a"},
                    channel_settings=settings, clock=noon)
    assert endpoint.requests == 6 and again.counts.sent_now == 0


def test_a_wrong_secret_stops_at_the_first_message_naming_the_secret_setting(tmp_path, state_dir, endpoint, noon):
    settings = _settings(tmp_path, endpoint.url, secret="not-the-secret")
    with pytest.raises(ChannelDownError, match="refused our signature.*TANDEM_CHANNEL_WEBHOOK_SECRET_FILE"):
        deliver("52", AUDIENCE, "hello {optout}", state_dir=state_dir, channel_settings=settings, clock=noon)
    assert endpoint.accepted == {} and endpoint.requests == 1


def test_plain_http_off_loopback_is_refused():
    with pytest.raises(ValueError, match="WEBHOOK_URL: plain http is allowed on loopback only"):
        ChannelSettings(kind="webhook", webhook_url="http://push.example.com/x", webhook_secret_file="/x")
