"""Attack 6 of issue 9 (and part of 10): flooding a real coordinator with bad tokens.

3,000 requests with made-up bearer tokens from one address used to write 3,000 fsynced, chained
``auth.failed`` events, each with a brute-forceable hash of the token's first characters. Now the
address gets ``auth_failure_burst`` 401s, then 429 with ``Retry-After`` (``ClientRateLimit``), and the
failures reach the chain as one ``auth.failed`` per window plus one ``auth.failed.repeated`` with the
count (``AuthFailureLog``), recording the client's address and the reason, nothing from the token.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.coordinator.api.conftest import LiveCoordinator, live_coordinator
from tests.support.coordinator import API

FLOOD = 3000
BURST = 20


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[LiveCoordinator]:
    """A real coordinator allowing 20 failures at once and one more per minute, in windows of 60 s."""
    yield from live_coordinator(tmp_path, auth_failure_burst=BURST, auth_failure_refill_seconds=60.0,
                                auth_failed_window_seconds=60.0)


def _auth_events(live: LiveCoordinator) -> list[dict]:
    return [e for e in live.stored_events() if e["action"].startswith("auth.")]


def test_a_bad_token_flood_gets_429_and_writes_a_bounded_number_of_events(strict: LiveCoordinator) -> None:
    statuses: Counter[int] = Counter()
    with strict.client() as c:
        for _ in range(FLOOD):
            r = c.get(f"{API}/jobs", headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"})
            statuses[r.status_code] += 1
        refused = c.get(f"{API}/users/me", headers={"Authorization": "Bearer still-wrong-0123456789"})
    written = _auth_events(strict)
    print(f"{FLOOD} bad-token requests: {dict(statuses)}; auth events chained: {len(written)}")

    assert statuses[401] == BURST and statuses[429] == FLOOD - BURST
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    detail = refused.json()["detail"][0]
    assert detail["field"] == "header.authorization" and "too many failed authentications" in detail["message"]
    assert "Retry-After" in detail["fix"]
    assert [e["action"] for e in written] == ["auth.failed"]
    assert written[0]["details"] == {"channel": "api", "reason": "unknown token", "client": "127.0.0.1"}

    strict.advance(timedelta(seconds=61))  # the window closes; reading the log chains its count
    strict.app.state.auth_failures.flush(strict.ctx)
    summary = _auth_events(strict)[-1]
    assert summary["action"] == "auth.failed.repeated" and summary["details"]["repeats"] == BURST - 1
    assert len(_auth_events(strict)) == 2


def test_auth_failed_records_nothing_derived_from_the_token(live: LiveCoordinator) -> None:
    token = "Kq3vZ" + secrets.token_urlsafe(30)
    with live.client(token) as c:
        assert c.get(f"{API}/users/me").status_code == 401

    event = _auth_events(live)[-1]
    prefix_hash = hashlib.sha256(token[:6].encode()).hexdigest()[:12]  # what was stored before: 36 bits of it
    assert prefix_hash not in str(event) and token[:6] not in str(event)
    assert set(event["details"]) == {"channel", "reason", "client"}


def test_a_client_that_stops_failing_is_served_again_and_valid_tokens_never_spend(live: LiveCoordinator) -> None:
    with live.client() as c:
        boot = {"Authorization": "Bearer " + "bootstrap-test-token-0123456789abcdef"}
        created = c.post(f"{API}/users", json={"name": "a1", "role": "auditor", "signing_key": "a" * 64},
                         headers=boot)
        assert created.status_code == 201, created.text
        good = {"Authorization": f"Bearer {created.json()['token']}"}
        oks = [c.get(f"{API}/users/me", headers=good).status_code for _ in range(300)]  # burst is 100
    assert set(oks) == {200}
