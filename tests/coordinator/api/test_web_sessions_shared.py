"""Browser sessions live in the database: every coordinator process on it sees the same sessions.

Each test builds two or more apps (``create_app``) over one database, as the worker processes of one
``tandem-coordinator serve`` are: on one SQLite file, and on one PostgreSQL schema through stores of their
own (``postgres``). A shared clock (``ctx.clock`` of every app) moves time forward. The in-memory sessions
of earlier versions fail each of these tests: a session opened by one app was unknown to the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from coordinator.api import web_sessions
from coordinator.api.web_sessions import ABSOLUTE, COOKIE, IDLE
from coordinator.app import create_app
from coordinator.store import CATALOG, SqlStore
from protocols.wire.control import JobStatus
from tests.support.coordinator import API, TestClient, World, app_settings, pg_store


class Processes:
    """Coordinator apps over one database, each with a TestClient, all reading one movable clock."""

    def __init__(self, tmp_path: Path, pg_schema: str | None) -> None:
        self.tmp_path, self.pg_schema = tmp_path, pg_schema
        self.now = datetime.now(UTC)
        self.clients: list[TestClient] = []

    def clock(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def start(self) -> TestClient:
        """Another process on the database: a new app with a store (engine and connections) of its own."""
        if self.pg_schema is None:
            app = create_app(app_settings(self.tmp_path, database_url=f"sqlite:///{self.tmp_path}/coord.db"))
        else:
            app = create_app(app_settings(self.tmp_path), store=pg_store(self.pg_schema))
        app.state.context = dataclasses.replace(app.state.context, clock=self.clock)
        client = TestClient(app).__enter__()
        self.clients.append(client)
        return client

    def stop(self, client: TestClient) -> None:
        """End a process: its app and its store's connections are gone."""
        client.__exit__(None, None, None)
        client.app.state.context.store.close()
        self.clients.remove(client)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Processes]:
    """A database and a way to start coordinator processes on it (stopped afterwards)."""
    schema = request.getfixturevalue("pg_schema") if request.param == "postgres" else None
    processes = Processes(tmp_path, schema)
    yield processes
    for client in list(processes.clients):
        processes.stop(client)


def _auditor(client: TestClient) -> str:
    """A new auditor's API token (created through ``client`` with the bootstrap token)."""
    return World(client).add_user("auditor", "auditor", None)


def _login(client: TestClient, token: str) -> str:
    r = client.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    client.cookies.clear()  # every request below names its cookie itself
    return r.cookies[COOKIE]


def _view(client: TestClient, cookie: str) -> int:
    status = client.get("/audit", headers={"Cookie": f"{COOKIE}={cookie}"}).status_code
    client.cookies.clear()
    return status


def _stored(app: FastAPI, cookie: str) -> web_sessions.WebSession | None:
    with app.state.context.store.read() as tx:
        return tx.sessions.get(hashlib.sha256(cookie.encode()).hexdigest())


def _count(app: FastAPI) -> int:
    with app.state.context.store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM web_session")).scalar_one())


def _versions(app: FastAPI) -> tuple[int, ...]:
    store = app.state.context.store
    assert isinstance(store, SqlStore)
    return store.versions(CATALOG, *(s.value for s in JobStatus))


def test_a_login_through_one_process_is_a_session_in_every_other_until_logout(procs: Processes) -> None:
    # Prepare
    a, b = procs.start(), procs.start()
    token = _auditor(a)
    versions = _versions(a.app), _versions(b.app)

    # Execute: log in through A, view through B, log out through B
    cookie = _login(a, token)
    page = b.get("/audit", headers={"Cookie": f"{COOKIE}={cookie}"})
    b.cookies.clear()
    logout = b.post("/logout", headers={"Cookie": f"{COOKIE}={cookie}"}, follow_redirects=False)
    b.cookies.clear()

    # Assert: B served the page and ended the session; A and B refuse the cookie now
    assert page.status_code == 200 and "signed in as auditor" in page.text
    assert logout.status_code == 303
    assert (_view(a, cookie), _view(b, cookie)) == (401, 401)
    events = a.get(f"{API}/audit/events", params={"limit": 1000}, headers={"Authorization": f"Bearer {token}"})
    actions = [e["action"] for e in events.json() if e["action"].startswith("web.")]
    assert actions == ["web.login", "web.logout"]
    assert (_versions(a.app), _versions(b.app)) == versions  # no cached answer depends on sessions


def test_a_session_survives_a_restart_and_the_cookie_value_is_never_stored(procs: Processes) -> None:
    # Prepare: a session opened by a process that then stops
    a = procs.start()
    cookie = _login(a, _auditor(a))
    procs.stop(a)

    # Execute
    c = procs.start()
    status = _view(c, cookie)

    # Assert: the new process serves it; the database holds the SHA-256 of the cookie value, not the value
    assert status == 200
    stored = _stored(c.app, cookie)
    assert stored is not None and stored.user == "auditor"
    store = c.app.state.context.store
    with store.engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM web_session"))]
    assert rows and not any(cookie in value for row in rows for value in row)


def test_use_through_one_process_keeps_the_session_alive_in_another(procs: Processes) -> None:
    # Prepare
    a, b = procs.start(), procs.start()
    cookie = _login(a, _auditor(a))
    opened = procs.now

    # Execute: views through A within a minute (read only), at 20 min (recorded), through B at 45 min
    procs.advance(timedelta(seconds=30))
    early = _view(a, cookie)
    seen_early = _stored(b.app, cookie)
    procs.advance(timedelta(minutes=19, seconds=30))
    middle = _view(a, cookie)
    procs.advance(timedelta(minutes=25))
    late = _view(b, cookie)

    # Assert: 45 min after login, but 25 min after its last use through A: alive in B
    assert (early, middle, late) == (200, 200, 200)
    assert seen_early is not None and seen_early.seen == opened  # a view within SEEN_STEP writes nothing
    stored = _stored(a.app, cookie)
    assert stored is not None and stored.seen == procs.now


def test_a_stale_session_is_refused_and_removed_from_the_database(procs: Processes) -> None:
    # Prepare: one session left idle, one kept in use through both processes
    a, b = procs.start(), procs.start()
    token = _auditor(a)
    idle, busy = _login(a, token), _login(b, token)
    step = timedelta(minutes=25)

    # Execute: use ``busy`` every 25 min, alternating processes, up to 7 h 55 min; then once more at 8 h 20 min
    statuses = []
    for i in range((ABSOLUTE - timedelta(seconds=1)) // step):
        procs.advance(step)
        statuses.append(_view((a, b)[i % 2], busy))
    idle_stored = _stored(a.app, idle)
    idle_status = _view(b, idle)
    procs.advance(step)
    final = _view(a, busy)

    # Assert: the idle one ended after IDLE (removed once refused), the busy one at ABSOLUTE
    assert step < IDLE and len(statuses) == 19 and set(statuses) == {200}
    assert idle_stored is not None and idle_status == 401 and _stored(a.app, idle) is None
    assert final == 401 and _stored(b.app, busy) is None


def test_the_session_bound_holds_across_processes(procs: Processes, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setattr(web_sessions, "MAX_SESSIONS", 3)
    a, b = procs.start(), procs.start()
    token = _auditor(a)

    # Execute: four logins, alternating processes, a minute apart
    cookies = []
    for i in range(4):
        cookies.append(_login((a, b)[i % 2], token))
        procs.advance(timedelta(minutes=1))

    # Assert: the least recently used session (opened through A) ended everywhere; three remain
    assert [(_view(a, c), _view(b, c)) for c in cookies] == [(401, 401)] + [(200, 200)] * 3
    assert _count(a.app) == 3


def test_a_database_of_an_earlier_version_gains_the_session_table(procs: Processes) -> None:
    # Prepare: a database without the table (as earlier versions left it), users and audit log kept
    a = procs.start()
    token = _auditor(a)
    with a.app.state.context.store.engine.begin() as conn:
        conn.execute(text("DROP TABLE web_session"))
    procs.stop(a)

    # Execute: a process starts on it (``init_schema`` creates what is missing)
    b = procs.start()
    cookie = _login(b, token)

    # Assert
    assert _view(b, cookie) == 200 and _count(b.app) == 1
