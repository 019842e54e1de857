"""Issue 10 item 5: what makes the coordinator cheap under load must stay correct.

The token cache (``coordinator.principal_cache``), the node-poll answers kept under the store's write
versions (``coordinator.answer_cache``, ``SqlStore.versions``) and the failed-authentication limit that
gives a request's token back once it has authenticated (``ClientRateLimit``) are checked here for what
they must never do: serve a revoked token, hide a new or changed job from the next poll, refuse valid
callers for failures nobody made, or let a concurrent brute force past the limit.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from coordinator import accounts
from coordinator.answer_cache import AnswerCache
from coordinator.principal_cache import PrincipalCache
from coordinator.store import CATALOG, JobUpdate, SqlStore
from protocols.wire.control import Role, UserPublic
from tests.coordinator.api.conftest import LiveCoordinator, live_coordinator
from tests.support.coordinator import API, BOOT, World

BURST = 5
CONCURRENT = 30


def _poll(world: World, who: str, status: str = "approved") -> httpx.Response:
    return world.c.get(f"{API}/nodes/jobs", params={"status": status}, headers=world.h(who))


# ---------------------------------------------------------------- revocation and freshness, through the API


def test_a_revoked_token_is_refused_on_its_very_next_request(world: World) -> None:
    assert _poll(world, "telco_op").status_code == 200  # its user is now cached
    assert _poll(world, "telco_op").status_code == 200
    r = world.c.post(f"{API}/users/telco_op/revoke", headers=world.h("telco_admin"))
    assert r.status_code == 200, r.text

    refused = _poll(world, "telco_op")
    assert refused.status_code == 401 and "expired" in refused.text


def test_a_revoked_auditor_loses_the_audit_pages_at_once(world: World) -> None:
    assert world.c.post("/login", data={"token": world.tokens["auditor"]}, follow_redirects=False).status_code == 303
    assert world.c.get("/audit").status_code == 200
    ctx = world.c.app.state.context
    accounts.revoke_user(ctx, "cli", "auditor")  # as the CLI does it, in this process

    assert world.c.get("/audit").status_code == 401


def test_a_job_approved_running_or_failed_shows_in_the_next_poll(world: World) -> None:
    assert _poll(world, "telco_op").json() == [] and _poll(world, "telco_op").json() == []  # cached empty answer
    job = world.approved_job()

    approved = _poll(world, "telco_op").json()
    assert [j["id"] for j in approved] == [job["id"]] and approved[0]["status"] == "approved"
    assert _poll(world, "telco_op", "running").json() == []
    r = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "psi", "fraction": 0.5},
                     headers=world.h("telco_op"))
    assert r.status_code == 200, r.text

    assert _poll(world, "telco_op").json() == []
    running = _poll(world, "telco_op", "running").json()
    assert [j["id"] for j in running] == [job["id"]] and running[0]["progress"] == 0.5
    r = world.c.post(f"{API}/jobs/{job['id']}/progress", json={"stage": "psi", "fraction": 0.75},
                     headers=world.h("telco_op"))
    assert r.status_code == 200, r.text
    assert _poll(world, "telco_op", "running").json()[0]["progress"] == 0.75


def test_a_poll_answers_only_the_callers_party(world: World) -> None:
    world.add_user("bank_op", "operator", "bank")
    job = world.approved_job()
    assert [j["id"] for j in _poll(world, "telco_op").json()] == [job["id"]]
    world.add_user("other_op", "operator", "other")  # a party in no job: its cached answer is its own
    assert _poll(world, "other_op").json() == []
    assert [j["id"] for j in _poll(world, "bank_op").json()] == [job["id"]]


def test_the_audit_page_shows_events_written_since_it_was_last_viewed(world: World) -> None:
    assert world.c.post("/login", data={"token": world.tokens["auditor"]}, follow_redirects=False).status_code == 303
    before = world.c.get("/audit").text
    job = world.submit()
    after = world.c.get("/audit").text

    assert f"job:{job['id']}" not in before and f"job:{job['id']}" in after


# ---------------------------------------------------------------- the caches themselves


def _user(expires_at: datetime | None) -> UserPublic:
    return UserPublic(id=1, name="n1", role=Role.OPERATOR, party="bank", signing_key=None, created_at=datetime.now(UTC),
                      expires_at=expires_at)


def test_a_lookup_that_raced_a_revocation_cannot_cache_the_old_user() -> None:
    cache, now = PrincipalCache(), datetime.now(UTC)
    generation = cache.generation()  # a lookup starts, reads the store ...
    cache.invalidate()  # ... a revocation commits meanwhile ...
    cache.put("h", _user(None), generation)  # ... and the lookup's stale answer is dropped

    assert cache.get("h", now) is None
    cache.put("h", _user(None), cache.generation())
    assert cache.get("h", now) is not None


def test_a_cached_user_never_outlives_its_expiry_or_the_ttl() -> None:
    clock = [100.0]
    cache, now = PrincipalCache(ttl=2.0, clock=lambda: clock[0], known_for=300.0), datetime.now(UTC)
    cache.put("h", _user(now + timedelta(seconds=10)), cache.generation())
    assert cache.get("h", now) is not None and cache.known("h", now)
    assert cache.get("h", now + timedelta(seconds=10)) is None  # expired: gone, the store decides again
    assert not cache.known("h", now + timedelta(seconds=10))  # nor known to the limiter

    cache.put("h", _user(None), cache.generation())
    clock[0] += 2.0
    assert cache.get("h", now) is None  # the ttl: the store decides again ...
    assert cache.known("h", now)  # ... while the limiter still knows the caller
    clock[0] += 298.0
    assert not cache.known("h", now)


def test_a_revocation_makes_every_caller_unknown_to_the_limiter() -> None:
    cache, now = PrincipalCache(), datetime.now(UTC)
    cache.put("h", _user(None), cache.generation())
    assert cache.known("h", now)
    cache.invalidate()
    assert not cache.known("h", now) and cache.get("h", now) is None


def test_an_answer_is_dropped_by_a_newer_version_or_its_age() -> None:
    clock = [0.0]
    answers = AnswerCache(ttl=1.0, clock=lambda: clock[0])
    answers.put("k", (1, 0), b"[]")
    assert answers.get("k", (1, 0)) == b"[]"
    assert answers.get("k", (2, 0)) is None and answers.get("k", (1, 1)) is None
    clock[0] += 1.0
    assert answers.get("k", (1, 0)) is None


def test_store_versions_count_committed_writes_of_each_status_only(world: World) -> None:
    store = world.c.app.state.context.store
    assert isinstance(store, SqlStore)
    before = store.versions("approved", "running", "pending_approval", CATALOG)
    world.submit()
    after_submit = store.versions("approved", "running", "pending_approval", CATALOG)
    assert after_submit[:2] == before[:2] and after_submit[2] > before[2]  # a submission: no approved job moved

    world.approved_job()
    assert store.versions("approved")[0] > after_submit[0]
    approved = store.versions("approved")
    with pytest.raises(RuntimeError), store.write() as tx:  # rolled back: nothing changed, nothing counted
        tx.jobs.update_job(1, JobUpdate(status_detail="rolled back"), datetime.now(UTC))
        raise RuntimeError("abort")
    assert store.versions("approved") == approved
    world.register("bank", "more", [{"name": "mobile", "type": "string", "category": "identifier",
                                     "security_level": 3, "key_type": "mobile", "purposes": ["marketing"]}])
    assert store.versions(CATALOG)[0] > after_submit[3]


# ---------------------------------------------------------------- the failed-authentication limit, concurrently


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[LiveCoordinator]:
    """A real coordinator allowing 5 failures at once and one more per minute."""
    yield from live_coordinator(tmp_path, auth_failure_burst=BURST, auth_failure_refill_seconds=60.0,
                                auth_failed_window_seconds=60.0)


async def _concurrently(url: str, requests: list[tuple[str, str, dict]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as c:
        return await asyncio.gather(*(c.request(method, path, **kw) for method, path, kw in requests))


def test_many_slow_valid_requests_from_one_address_are_not_refused(strict: LiveCoordinator) -> None:
    """30 valid writes in flight at once from one address, burst 5: once authenticated, none is held
    against the limit (they used to take its 5 tokens and get 429 for failures nobody made)."""
    lock = strict.ctx.store._lock  # the SQLite writer lock: held here, every write waits for it
    assert lock is not None
    body = {"role": "auditor", "signing_key": "a" * 64}
    lock.acquire()
    try:
        requests = [("POST", f"{API}/users", {"headers": {"Authorization": f"Bearer {BOOT}"},
                                               "json": {**body, "name": f"held{i}"}}) for i in range(CONCURRENT)]
        loop_result: list[list[httpx.Response]] = []

        async def run() -> None:
            task = asyncio.ensure_future(_concurrently(strict.url, requests))
            await asyncio.sleep(1.0)  # let every request arrive and block behind the writer lock
            lock.release()
            loop_result.append(await task)

        asyncio.run(run())
    finally:
        if lock.locked():
            lock.release()
    statuses = Counter(r.status_code for r in loop_result[0])
    assert statuses == Counter({201: CONCURRENT}), statuses


def test_a_concurrent_brute_force_still_gets_only_the_burst(strict: LiveCoordinator) -> None:
    bad = [("GET", f"{API}/jobs", {"headers": {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}})
           for _ in range(CONCURRENT)]
    statuses = Counter(r.status_code for r in asyncio.run(_concurrently(strict.url, bad)))

    assert statuses == Counter({401: BURST, 429: CONCURRENT - BURST}), statuses


def _exhaust(strict: LiveCoordinator) -> None:
    with httpx.Client(base_url=strict.url, timeout=60.0) as c:
        for _ in range(BURST):
            guess = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
            assert c.get(f"{API}/jobs", headers=guess).status_code == 401


def test_a_known_token_beside_a_guess_does_not_pass_an_empty_bucket(strict: LiveCoordinator) -> None:
    """The app authenticates the first Authorization header and a login its form: a cached valid token sent
    as a second header, or beside a login form, must not carry a guess past the limit (or charge it)."""
    with httpx.Client(base_url=strict.url, timeout=60.0) as c:
        assert c.get(f"{API}/jobs", headers={"Authorization": f"Bearer {BOOT}"}).status_code not in (401, 429)
    _exhaust(strict)
    with httpx.Client(base_url=strict.url, timeout=60.0) as c:
        doubled = [c.get(f"{API}/jobs", headers=[("Authorization", f"Bearer guess{i}"),
                                                 ("Authorization", f"Bearer {BOOT}")]).status_code for i in range(20)]
        login = [c.post("/login", data={"token": f"guess{i}"},
                        headers={"Authorization": f"Bearer {BOOT}"}).status_code for i in range(20)]
        valid = c.get(f"{API}/jobs", headers={"Authorization": f"Bearer {BOOT}"})

    assert set(doubled) == {429} and set(login) == {429}, (Counter(doubled), Counter(login))
    assert valid.status_code not in (401, 429)  # the real caller is still served, and was not locked out


def test_a_known_token_beside_a_guessed_session_cookie_does_not_pass_an_empty_bucket(strict: LiveCoordinator) -> None:
    """The pages authenticate the session cookie, not the bearer token: a known token sent beside a guessed
    cookie (or a second Cookie header, or a non-bearer Authorization beside a cookie) must not carry the
    guess past the limit (found by attack: 200 cookie guesses from an empty bucket, all served as 401)."""
    with httpx.Client(base_url=strict.url, timeout=60.0) as c:
        created = c.post(f"{API}/users", json={"name": "aud", "role": "auditor", "signing_key": "a" * 64},
                         headers={"Authorization": f"Bearer {BOOT}"})
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        assert c.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    _exhaust(strict)
    with httpx.Client(base_url=strict.url, timeout=60.0) as c:
        beside = [c.get("/audit", headers={"Authorization": f"Bearer {token}",
                                           "Cookie": f"tandem_session=guess{i}"}).status_code for i in range(20)]
        basic = [c.get("/audit", headers={"Authorization": "Basic Zm9vOmJhcg==",
                                          "Cookie": f"tandem_session=guess{i}"}).status_code for i in range(5)]
        valid = c.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})

    assert set(beside) == {429} and set(basic) == {429}, (Counter(beside), Counter(basic))
    assert valid.status_code == 200  # the known caller alone is still served


def test_charged_failures_never_push_an_address_below_empty() -> None:
    """401s of trusted-looking requests are charged, but an empty bucket stays empty: a shared address is
    refused for one refill interval at most, not for hours (before: Retry-After grew by 60 s per failure)."""
    from coordinator.api.middleware import ClientRateLimit

    async def always_401(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    trusted = [True]
    limit = ClientRateLimit(always_401, burst=2, refill_seconds=60.0, clock=lambda: 0.0,  # type: ignore[arg-type]
                            trusted=lambda scope: trusted[0])

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=limit, client=("10.0.0.9", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for _ in range(50):
                assert (await c.get("/x")).status_code == 401
            trusted[0] = False
            return await c.get("/x")

    refused = asyncio.run(run())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 60, refused.headers
