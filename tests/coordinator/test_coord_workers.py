"""``tandem-coordinator serve --workers 2``: two real API processes on one port and one database.

Which worker takes a connection is the kernel's choice, so these tests choose for it: a worker paused
with SIGSTOP accepts nothing, and every request here opens a fresh connection, so while one worker is
paused the other serves everything. (uvicorn's supervisor pings each worker and kills one that has not
answered for ``cli.WORKER_START_SECONDS``, 60 s; each pause here lasts one or two requests.)

- A browser session opened through one worker is valid in the other, and a logout through one ends it
  in both: the sessions live in the database.
- Concurrent audited writes served by both workers leave one intact chain: no event lost, none twice
  (``audit export`` + ``audit verify``), and both workers did part of the work.
- A worker killed with SIGKILL is replaced, and the service answers throughout; when ``serve`` itself is
  killed with SIGKILL its workers end too, so a restart on the same port starts.
- A start that asks for workers on an in-memory database is refused, naming the settings.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.coordinator import BOOT, PG_URL
from tests.support.live_coordinator import ROOT, LiveCoordinator
from tests.support.workers import API, READY, create_user, fresh_client, paused, wait_until, worker_pids


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _pg_database() -> Iterator[str]:
    import psycopg

    name = f"tandem_workers_{os.getpid()}"
    dsn = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveCoordinator]:
    """``serve --workers 2`` on SQLite or PostgreSQL, both workers started."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    databases = _pg_database() if request.param == "postgres" else iter([f"sqlite:///{state / 'coord.db'}"])
    url = next(databases)
    coordinator = LiveCoordinator(state, workers=2, database_url=url)
    try:
        assert coordinator.start() is None, coordinator.output()
        wait_until("two workers started", lambda: coordinator.output().count(READY) >= 2, coordinator)
        assert len(worker_pids(coordinator.pid)) == 2, coordinator.output()
        yield coordinator
    finally:
        coordinator.stop()
        for _ in databases:  # drop the scratch database
            pass


def test_a_session_opened_through_one_worker_is_valid_in_the_other_and_a_logout_ends_it_in_both(served):
    one, two = worker_pids(served.pid)
    with fresh_client(served) as c:
        token = create_user(c, "auditor", "auditor")
        with paused(two):
            login = c.post("/login", data={"token": token, "next": "/audit"}, headers={"Origin": served.url})
        assert login.status_code == 303, login.text
        cookie = {"tandem_session": login.cookies["tandem_session"]}
        with paused(one):
            page = c.get("/audit", cookies=cookie)
        assert page.status_code == 200 and "audit" in page.text.lower(), page.text[:300]
        with paused(one):
            assert c.post("/logout", cookies=cookie, headers={"Origin": served.url}).status_code == 303
        with paused(two):
            after = c.get("/audit", cookies=cookie)
        assert after.status_code != 200, "a session ended through one worker still opens pages in the other"


def test_concurrent_audited_writes_through_both_workers_leave_one_intact_chain(served, tmp_path):
    workers = worker_pids(served.pid)
    before = {pid: _cpu_ticks(pid) for pid in workers}
    n = 120

    def create(i: int) -> int:
        with fresh_client(served) as c:
            body = {"name": f"node{i:03d}", "role": "operator", "party": ("bank", "telco")[i % 2]}
            return c.post(f"{API}/users", json=body, headers={"Authorization": f"Bearer {BOOT}"}).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(create, range(n)))
    assert codes == [201] * n, codes
    assert all(_cpu_ticks(pid) > before[pid] for pid in workers), "one worker served every request"

    served.stop()  # a clean stop: every worker writes its last signed head
    out = tmp_path / "audit.jsonl"
    exported = served.cli("audit", "export", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    key = served.cli("public-key").stdout.strip()
    verified = served.cli("audit", "verify", str(out), "--key", key)
    assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified.stdout + verified.stderr
    records = [r for r in map(json.loads, out.read_text().splitlines()) if "seq" in r]
    assert [r["seq"] for r in records] == list(range(records[0]["seq"], records[0]["seq"] + len(records)))
    created = [r["body"]["object"] for r in records if r["body"].get("action") == "user.created"]
    assert sorted(created) == [f"user:node{i:03d}" for i in range(n)], "an event is missing or written twice"


def test_a_killed_worker_is_replaced_and_the_service_answers_throughout(served):
    victim, survivor = worker_pids(served.pid)
    os.kill(victim, signal.SIGKILL)
    with fresh_client(served) as c:
        for _ in range(10):
            assert c.get(f"{API}/healthz").status_code == 200
    replaced = wait_until("a new worker in place of the killed one",
                     lambda: (kids := worker_pids(served.pid)) and len(kids) == 2 and victim not in kids and kids,
                     served)
    assert survivor in replaced
    wait_until("the new worker started", lambda: served.output().count(READY) >= 3, served)
    new = next(pid for pid in replaced if pid != survivor)
    with paused(survivor), fresh_client(served) as c:
        assert c.get(f"{API}/healthz").status_code == 200, "the new worker does not serve"
    assert new in worker_pids(served.pid)


def test_the_workers_end_when_serve_is_killed_and_a_restart_gets_the_port(served):
    workers = worker_pids(served.pid)
    port = int(served.url.rsplit(":", 1)[1])
    os.kill(served.pid, signal.SIGKILL)
    wait_until("the workers gone after serve was killed", lambda: not any(Path(f"/proc/{p}").exists() for p in workers),
          served)
    again = LiveCoordinator(served.state_dir, workers=2, database_url=served.database_url)
    assert again.start(port=port) is None, again.output()
    try:
        with fresh_client(again) as c:
            assert c.get(f"{API}/healthz").status_code == 200
    finally:
        again.stop()


def test_workers_on_an_in_memory_database_are_refused_naming_the_settings(tmp_path):
    env = {**os.environ, "TANDEM_COORD_STATE_DIR": str(tmp_path / "state"), "TANDEM_COORD_BOOTSTRAP_TOKEN": BOOT,
           "TANDEM_COORD_DATABASE_URL": "sqlite://", "TANDEM_COORD_TRAINING_ENABLED": "0",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "serve", "--port", "1", "--workers", "2"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert "TANDEM_COORD_WORKERS" in done.stderr and "in-memory database" in done.stderr
    assert "TANDEM_COORD_DATABASE_URL" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists(), "a refused start left a state directory behind"
