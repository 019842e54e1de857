"""Attacks on ``tandem-coordinator serve --workers 2`` through the real services (processes, HTTP, files).

Each test starts real ``serve`` processes (``LiveCoordinator``) on a SQLite file in a temporary state
directory and routes requests to one worker by pausing the other with SIGSTOP (``test_coord_workers``).

- Audit events appended by the workers are signed into ``audit_heads.json``: a tail of them deleted from
  the database while the coordinator was stopped is refused at the next start, as with one process.
- A worker that uvicorn starts again (after a crash, or on SIGHUP) enforces the policy ``serve`` loaded and
  recorded in ``policy.loaded``, not the policy file as edited since; a file broken since does not keep
  the replacement from starting.
- A token revoked through one worker is refused by the other within 2 s, and its 401s there are then
  limited like any failed authentication (not served without limit for minutes as a "known" caller).
- Workers of a ``serve`` killed by SIGKILL while they are still starting end too, also under a
  subreaper (systemd's user manager, ``tini -s``), instead of serving on in the port.
- A worker that takes more than 5 s to start (imports on a loaded machine) is not killed as hung by
  uvicorn's supervisor (and its replacement with it, and so on).
- Workers on an in-memory SQLite database spelled otherwise than ``sqlite://`` are refused like it.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from tests.support.coordinator import BOOT
from tests.support.live_coordinator import ROOT, LiveCoordinator, free_port
from tests.support.workers import API, READY, create_user, fresh_client, paused, wait_until, worker_pids

POLICY = ROOT / "coordinator" / "policy.yaml"


class Coordinator(LiveCoordinator):
    """``LiveCoordinator`` with extra environment (policy file, limits)."""

    def __init__(self, state_dir: Path, *, workers: int = 2, extra: dict[str, str] | None = None) -> None:
        super().__init__(state_dir, workers=workers)
        self.extra = extra or {}

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self.extra}


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return state


def _started(coordinator: Coordinator) -> Coordinator:
    assert coordinator.start() is None, coordinator.output()
    wait_until(f"{coordinator.workers} workers started",
          lambda: coordinator.output().count(READY) >= coordinator.workers, coordinator, timeout=120)
    return coordinator


def _audit_bodies(db: Path, action: str) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT body FROM audit_event ORDER BY seq").fetchall()
    return [body for body in (json.loads(r[0]) for r in rows) if body.get("action") == action]


def test_a_tail_of_events_written_by_workers_deleted_while_stopped_is_refused_at_the_next_start(tmp_path):
    state = _state(tmp_path)
    coordinator = _started(Coordinator(state))
    with fresh_client(coordinator) as c:
        for i in range(6):
            create_user(c, f"clerk{i}", "auditor")  # six user.created events, appended by the workers
    coordinator.stop()  # a clean stop: every process writes its newest signed head
    with sqlite3.connect(state / "coord.db") as db:
        (start,) = db.execute("SELECT max(seq) FROM audit_event WHERE body LIKE '%policy.loaded%'").fetchone()
        (last,) = db.execute("SELECT max(seq) FROM audit_event").fetchone()
    signed = json.loads((state / "audit_heads.json").read_text())["seq"]

    # the attack: whoever can write the database file drops the append-only trigger and deletes every event
    # the workers appended (a head one worker wrote may be replaced by another's older one, never by serve's)
    with sqlite3.connect(state / "coord.db") as db:
        db.execute("DROP TRIGGER audit_event_no_delete")
        db.execute("DELETE FROM audit_event WHERE seq > ?", (start,))

    again = Coordinator(state)
    code = again.start()
    if code is None:
        again.stop()
    assert code is not None and "audit log tampered" in again.output(), (
        f"the six user.created events deleted from the tail went unnoticed: the heads file names seq {signed} "
        f"(serve's policy.loaded is {start}, the last event {last}): the workers' events were never signed into it")


def test_a_replaced_worker_enforces_the_policy_serve_recorded_not_the_file_edited_since(tmp_path):
    policy = tmp_path / "policy.yaml"
    text = POLICY.read_text()
    policy.write_text(text)
    state = _state(tmp_path)
    coordinator = _started(Coordinator(state, extra={"TANDEM_COORD_POLICY_PATH": str(policy)}))
    try:
        recorded = [b["details"] for b in _audit_bodies(state / "coord.db", "policy.loaded")]
        assert len(recorded) == 1, recorded
        version = str(recorded[0]["version"])  # type: ignore[index]

        # someone edits the policy file of the running coordinator (a new version, not yet loaded) ...
        policy.write_text(text.replace(f'version: "{version}"', 'version: "2099-01-01.1"'))
        victim, survivor = worker_pids(coordinator.pid)
        os.kill(victim, signal.SIGKILL)  # ... and a worker crashes: uvicorn starts a new one
        wait_until("a new worker started", lambda: coordinator.output().count(READY) >= 3, coordinator)
        (new,) = [pid for pid in worker_pids(coordinator.pid) if pid != survivor]
        with paused(survivor), fresh_client(coordinator) as c:
            served = c.get(f"{API}/healthz").json()["policy_version"]
        loaded = [b["details"]["version"] for b in _audit_bodies(state / "coord.db", "policy.loaded")]  # type: ignore[index]
        assert served == version, (f"the new worker enforces policy {served}; the audit log records only {loaded} "
                                   "and the other worker enforces {version}")

        # the file is now broken: a worker started again still starts (no crash loop) with the recorded policy
        policy.write_text("kinds: [\n")
        os.kill(new, signal.SIGKILL)
        wait_until("a worker started after the policy file broke", lambda: coordinator.output().count(READY) >= 4,
              coordinator, timeout=60)
        with paused(survivor), fresh_client(coordinator) as c:
            assert c.get(f"{API}/healthz").json()["policy_version"] == version
    finally:
        coordinator.stop()


def test_a_token_revoked_through_one_worker_is_limited_in_the_other_like_any_failed_token(tmp_path):
    state = _state(tmp_path)
    # burst 10: 5 per worker
    coordinator = _started(Coordinator(state, extra={"TANDEM_COORD_AUTH_FAILURE_BURST": "10",
                                                     "TANDEM_COORD_AUTH_FAILURE_REFILL_SECONDS": "60"}))
    try:
        one, two = worker_pids(coordinator.pid)
        with fresh_client(coordinator) as c:
            boss, victim = create_user(c, "boss", "auditor"), create_user(c, "victim", "auditor")
            as_victim = {"Authorization": f"Bearer {victim}"}
            with paused(one):
                assert c.get(f"{API}/users/me", headers=as_victim).status_code == 200  # worker two knows it
            with paused(two):
                revoked = c.post(f"{API}/users/victim/revoke", headers={"Authorization": f"Bearer {boss}"})
            assert revoked.status_code == 200, revoked.text
            time.sleep(2.5)  # the documented 2 s for the other worker's token cache
            with paused(one):
                codes = collections.Counter(c.get(f"{API}/users/me", headers=as_victim).status_code
                                            for _ in range(30))
        assert codes[200] == 0, f"worker two still accepts the revoked token: {codes}"
        assert codes[429] >= 20, f"the revoked token's 401s are not limited in worker two: {dict(codes)}"
    finally:
        coordinator.stop()


REAPER = """\
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphans become this process's children
proc = subprocess.Popen(sys.argv[1:])
print(proc.pid, flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG and subreapers are Linux's")
def test_workers_of_a_serve_killed_while_they_start_end_also_under_a_subreaper(tmp_path):
    state = _state(tmp_path)
    coordinator = Coordinator(state)
    port = free_port()
    with (tmp_path / "server.log").open("w") as log:
        reaper = subprocess.Popen([sys.executable, "-c", REAPER, sys.executable, "-m", "coordinator.cli", "serve",
                                   "--port", str(port)], env=coordinator.env, cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=log, text=True)
    workers: list[int] = []
    try:
        assert reaper.stdout is not None
        serve = int(reaper.stdout.readline())
        deadline = time.monotonic() + 120
        while len(workers := worker_pids(serve)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(workers) == 2, (tmp_path / "server.log").read_text()
        os.kill(serve, signal.SIGKILL)  # while the workers import the app, before they ask to end with serve
        deadline = time.monotonic() + 45
        while any(Path(f"/proc/{p}").exists() for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = [p for p in workers if Path(f"/proc/{p}").exists()]
        assert not alive, f"workers {alive} outlived the killed serve and hold port {port}"
    finally:
        for pid in workers:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        reaper.wait(timeout=30)


def test_a_worker_slow_to_start_is_not_killed_as_hung(tmp_path):
    state = _state(tmp_path)
    coordinator = Coordinator(state)
    port = free_port()
    with (tmp_path / "server.log").open("w") as log:
        serve = subprocess.Popen([sys.executable, "-m", "coordinator.cli", "serve", "--port", str(port)],
                                 env=coordinator.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (workers := worker_pids(serve.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert workers, (tmp_path / "server.log").read_text()
        slow = workers[0]
        os.kill(slow, signal.SIGSTOP)  # 8 s without an answer while it starts, as a loaded machine's imports take
        time.sleep(8)
        with suppress(ProcessLookupError):  # killed and reaped meanwhile
            os.kill(slow, signal.SIGCONT)
        deadline = time.monotonic() + 120
        while (tmp_path / "server.log").read_text().count(READY) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        output = (tmp_path / "server.log").read_text()
        assert slow in worker_pids(serve.pid) and f"[{slow}] died" not in output, (
            f"uvicorn killed worker {slow} while it was starting:\n{output[-2000:]}")
    finally:
        serve.terminate()
        serve.wait(timeout=60)


@pytest.mark.parametrize("url", ["sqlite+pysqlite://", "sqlite+pysqlite:///:memory:", "sqlite:///"])
def test_workers_on_an_in_memory_database_spelled_otherwise_are_refused_naming_the_settings(tmp_path, url):
    env = {**os.environ, "TANDEM_COORD_STATE_DIR": str(tmp_path / "state"), "TANDEM_COORD_BOOTSTRAP_TOKEN": BOOT,
           "TANDEM_COORD_DATABASE_URL": url, "TANDEM_COORD_TRAINING_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([sys.executable, "-m", "coordinator.cli", "serve", "--port", str(free_port()),
                               "--workers", "2"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve --workers 2 on {url} started: each worker has a database of its own")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "TANDEM_COORD_WORKERS" in done.stderr and "in-memory database" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused start left files behind"
