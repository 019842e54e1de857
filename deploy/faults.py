"""Faults injected into the three-organisation namespace topology, and the end state each must leave.

Built on the harness's public functions only (:class:`deploy.netns_harness.Topology`,
:mod:`deploy.three_orgs`). The faults:

- :func:`kill_node` — ``kill -9`` a party's ``node`` service (its process group) and start it again as
  ``restart: unless-stopped`` would; :func:`freeze_mid_job` first holds it still inside a job, so the kill
  lands mid-protocol;
- :func:`cut_link` — the party's root-side veth down for a while, then up again;
- :func:`restart_coordinator` — SIGTERM the ``coordinator`` service and start it again;
- :func:`restart_postgres` — the coordinator's database "restarts": every backend of the run's database is
  terminated with ``pg_terminate_backend`` and the ``postgres`` service (the proxy on the bridge) is
  restarted. The machine's PostgreSQL cluster itself is shared with other tests, so it is not restarted;
  from the coordinator's side the effect is the same (its connections drop, the port refuses meanwhile);
- :func:`small_state_disk` / :func:`fill` — a small tmpfs mounted over a party's state volume (with the
  volume's contents copied in), then filled to the last byte.

:func:`settle` takes a job through to its end state after a fault: failed cleanly with the reason in the
audit log and then retried with fresh approvals (the runtime allows one run per signature), or resumed
without help; then no half-written result, the audit chain, both egress ledgers and their cross-check.
:class:`EndState` prints that as one line.

What each party learns: nothing beyond what the jobs it runs reveal; this module only drives operators'
commands and breaks processes, links and disks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.netns_harness import PG_HOST, PG_PORT, HarnessError, Topology
from deploy.three_orgs import FINAL, AuditCheck, Deployment, verify_audit
from node.ledger import COORDINATOR_PEER
from protocols.wire.control import JobPublic, JobStatus

__all__ = ["EndState", "approve", "cut_link", "fill", "freeze_mid_job", "half_written", "job_events", "kill_node",
           "restart_coordinator", "restart_postgres", "settle", "small_state_disk", "status", "submit",
           "wait_for", "wait_final"]


# ----------------------------------------------------------------------------- jobs


def approve(dep: Deployment, job: JobPublic, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> None:
    """Give the approvals ``job`` needs (``only`` those, none of ``skip``).

    Each party's data owner in its own namespace (``party:<name>``), compliance with its key (``auditor``).
    """
    for req in job.required_approvals:
        if req in skip or (only is not None and req not in only):
            continue
        if req.startswith("party:"):
            dep.node(req.split(":", 1)[1], "approve", str(job.id), "--yes")
        else:
            with dep.api("compliance") as c:
                c.post(f"/jobs/{job.id}/approvals", json={
                    "approver": "auditor", "signature": dep.auditor_key.sign_approval(job.digest)}).raise_for_status()


def submit(dep: Deployment, body: dict[str, Any], *, approved: bool = True) -> JobPublic:
    """Submit ``body`` as the bank's analyst and (``approved``) approve it, without waiting for it to run."""
    with dep.api("bank-analyst") as c:
        r = c.post("/jobs", json=body)
        if r.status_code >= 400:
            raise HarnessError(f"job refused ({r.status_code}): {r.text}")
        job = JobPublic.model_validate(r.json())
    if approved:
        approve(dep, job)
    return status(dep, job.id)


def status(dep: Deployment, job_id: int) -> JobPublic:
    """The job as compliance sees it now."""
    with dep.api("compliance") as c:
        return JobPublic.model_validate(c.get(f"/jobs/{job_id}").raise_for_status().json())


def wait_for(dep: Deployment, job_id: int, ok: Callable[[JobPublic], bool], timeout: float,
             interval: float = 0.2) -> JobPublic:
    """Poll the job until ``ok(job)`` (a coordinator that does not answer meanwhile is polled again).

    Raises:
        HarnessError: not reached in ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    job: JobPublic | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            job = status(dep, job_id)
            if ok(job):
                return job
        time.sleep(interval)
    shown = f"{job.status} {job.status_detail}" if job is not None else "no answer"
    raise HarnessError(f"job {job_id}: condition not reached after {timeout:.0f}s ({shown})")


def wait_final(dep: Deployment, job_id: int, timeout: float = 900.0) -> JobPublic:
    """Wait until the job is succeeded, failed, rejected or cancelled."""
    return wait_for(dep, job_id, lambda j: j.status in FINAL, timeout, interval=1.0)


def retry(dep: Deployment, job_id: int, reason: str) -> JobPublic:
    """``POST /jobs/{id}/retry`` as the bank's analyst, then the new attempt's approvals."""
    with dep.api("bank-analyst") as c:
        r = c.post(f"/jobs/{job_id}/retry", json={"reason": reason})
        if r.status_code >= 400:
            raise HarnessError(f"retry of job {job_id} refused ({r.status_code}): {r.text}")
        job = JobPublic.model_validate(r.json())
    approve(dep, job)
    return job


def job_events(dep: Deployment, job_id: int) -> list[dict[str, Any]]:
    """The audit events about ``job:<id>``, oldest first (paged through the whole log)."""
    found, after = [], -1
    with dep.api("compliance") as c:
        while True:
            page = c.get("/audit/events", params={"after_seq": after, "limit": 1000}).raise_for_status().json()
            found += [e for e in page if e["object"] == f"job:{job_id}"]
            if len(page) < 1000:
                return found
            after = page[-1]["seq"]


def half_written(topo: Topology, parties: tuple[str, ...] = ("bank", "telco")) -> list[str]:
    """Leftovers of runs that did not finish: ``jobs/<id>.partial`` directories and ``*.tmp`` files."""
    left = []
    for party in parties:
        state = topo.volume(party, f"{party}-state")
        found = [*(state / "jobs").glob("*.partial"), *state.rglob("*.tmp")]  # glob of a missing dir: nothing
        left += [str(p.relative_to(state)) for p in found]
    return sorted(left)


# ----------------------------------------------------------------------------- faults


def kill_node(topo: Topology, party: str) -> None:
    """``kill -9`` the party's node service (its whole process group), then start it again."""
    topo.restart(party, "node", signal.SIGKILL)


def freeze_mid_job(topo: Topology, party: str, job_id: int, timeout: float = 600.0,
                   stop: threading.Event | None = None) -> bool:
    """Freeze (SIGSTOP) the party's node service once it is inside job ``job_id``; whether it was.

    Inside means its half-written ``jobs/<id>.partial`` exists and its egress ledger holds a message of
    the job to the other node. Polled every 2 ms on the party's state volume (the ledger read-only,
    beside the node's WAL), so a fault that follows (:func:`kill_node`) lands mid-protocol however fast
    the job runs: watched from the coordinator's job status, a scoring job over the small population can
    run from start to end between two polls. A frozen node answers nothing, so the job cannot end
    meanwhile. Start it before the job's last approval (in a thread): a job can run from start to end
    before the approving command returns; set ``stop`` to end the watch (an approval failed). False when
    the job ended at the node before the stop: the node is running and the caller tries another job.
    """
    state = topo.volume(party, f"{party}-state")
    partial, done, db = state / "jobs" / f"{job_id}.partial", state / "jobs" / str(job_id), state / "node.db"
    deadline = time.monotonic() + timeout
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)) as ledger:
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if done.is_dir():
                return False
            if partial.is_dir() and _sent_to_peer(ledger, job_id):
                topo.send_signal(party, "node", signal.SIGSTOP)
                if partial.is_dir():
                    return True
                topo.send_signal(party, "node", signal.SIGCONT)
                return False
            time.sleep(0.002)
    raise HarnessError(f"job {job_id} did not reach the {party}'s node mid-protocol (watched up to {timeout:.0f}s)")


def _sent_to_peer(ledger: sqlite3.Connection, job_id: int) -> bool:
    """Whether a node's egress ledger holds a message of ``job_id`` to a node (not the coordinator)."""
    try:
        rows = ledger.execute("SELECT body FROM egress_ledger WHERE job_id = ?", (job_id,)).fetchall()
    except sqlite3.Error:  # busy for a moment: not yet
        return False
    return any(json.loads(body).get("peer") != COORDINATOR_PEER for (body,) in rows)


@contextlib.contextmanager
def cut_link(topo: Topology, party: str) -> Iterator[None]:
    """The party's link to the other organisations down inside the block (its root-side veth)."""
    topo.set_link(party, False)
    try:
        yield
    finally:
        topo.set_link(party, True)


def restart_coordinator(topo: Topology) -> None:
    """Stop the coordinator service (SIGTERM) and start it again (health check waited for)."""
    topo.restart("coordinator", "coordinator")


def restart_postgres(topo: Topology, down_for: float = 3.0) -> int:
    """Terminate every backend of the run's database and restart the ``postgres`` service; return how many.

    Raises:
        HarnessError: the topology has no database yet.
    """
    import psycopg

    if topo.database is None:
        raise HarnessError("the coordinator's postgres service has not been started")
    with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname="postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                            (topo.database,)).fetchall()
    topo.stop("coordinator", "postgres")  # and the port the coordinator dials refuses until the restart
    time.sleep(down_for)
    topo.up("coordinator", ["postgres"])
    return sum(1 for (done,) in rows if done)


@contextlib.contextmanager
def small_state_disk(topo: Topology, party: str, size_mib: int = 64) -> Iterator[Path]:
    """A ``size_mib`` tmpfs over the party's state volume for the block, its contents carried over and back.

    The node service is stopped while the contents are copied (in, then back out) and started again on
    the small disk; the block gets the mount point.
    """
    vol = topo.volume(party, f"{party}-state")
    keep = Path(tempfile.mkdtemp(prefix=f"{party}-state-", dir=topo.workdir))
    topo.stop(party, "node")
    shutil.copytree(vol, keep, symlinks=True, dirs_exist_ok=True, ignore=_sockets)
    _run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(vol)])
    try:
        shutil.copytree(keep, vol, symlinks=True, dirs_exist_ok=True)
        topo.up(party, ["node"])
        yield vol
    finally:
        topo.stop(party, "node")
        shutil.rmtree(keep)
        shutil.copytree(vol, keep, symlinks=True, ignore=_sockets)
        _run(["umount", str(vol)])
        shutil.rmtree(vol)
        shutil.copytree(keep, vol, symlinks=True)
        vol.chmod(0o700)
        shutil.rmtree(keep)
        topo.up(party, ["node"])


def _sockets(directory: str, names: list[str]) -> set[str]:
    """Sockets and pipes (a stopped service's leftovers) are not copied."""
    paths = {n: Path(directory) / n for n in names}
    return {n for n, p in paths.items() if not (p.is_symlink() or p.is_dir() or p.is_file())}


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its file system has no byte left; return the file.

    Unbuffered writes, so nothing is left in a buffer that a close would try (and fail) to write.
    """
    filler = directory / "filler.bin"
    chunk = b"\0" * (1 << 20)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while os.write(fd, chunk[:size]) > 0:
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    return filler


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise HarnessError(f"{' '.join(argv)}: {proc.stderr.strip()}")


# ----------------------------------------------------------------------------- end state


@dataclass
class EndState:
    """How a job came out of a fault, and what the audit and ledger checks said."""

    fault: str
    job_id: int
    first: JobPublic
    audit_reason: str | None
    final: JobPublic
    retried: bool
    half_written: list[str]
    check: AuditCheck

    def line(self) -> str:
        """One line for the closing note."""
        first = f"{self.first.status}" + (f" ({self.audit_reason[:110]})" if self.audit_reason else "")
        then = f" -> retry attempt {self.final.attempt}: {self.final.status}" if self.retried else ""
        checks = " | ".join(_summary(block) for block in self.check.text.split("\n$ ") if block.strip())
        return (f"{self.fault}: job {self.job_id} {first}{then}; half-written: {self.half_written or 'none'}; "
                f"{checks}")


def _summary(block: str) -> str:
    head, _, rest = block.lstrip("$ ").partition("\n")
    cmd = head.split("  (")[0].split(" audit.jsonl")[0]
    out = rest.strip().splitlines()
    return f"{cmd}: {out[-1] if out else ''}"[:160]


def settle(dep: Deployment, fault: str, job: JobPublic, timeout: float = 900.0) -> EndState:
    """Wait for ``job`` after a fault; retry it once (fresh approvals) if it failed; check the end state.

    A failed first attempt must have its reason in the audit log (``job.status`` to ``failed`` with the
    detail); the retry must succeed (it shows the node serving again without manual repair).
    """
    first = wait_final(dep, job.id, timeout)
    reason, final, retried = None, first, False
    if first.status == JobStatus.FAILED:
        moves = [e for e in job_events(dep, job.id)
                 if e["action"] == "job.status" and e["details"].get("to") == JobStatus.FAILED.value]
        reason = moves[-1]["details"].get("detail") if moves else None
        retry(dep, job.id, f"after fault: {fault}")
        final = wait_final(dep, job.id, timeout)
        retried = True
    return EndState(fault, job.id, first, reason, final, retried, half_written(dep.topo), verify_audit(dep))


def dumps(states: list[EndState]) -> str:
    """The closing note's lines, and the same as JSON for the record."""
    rows = [{"fault": s.fault, "job": s.job_id, "first": s.first.status.value, "reason": s.audit_reason,
             "final": s.final.status.value, "attempt": s.final.attempt, "half_written": s.half_written,
             "checks_ok": s.check.ok} for s in states]
    return "\n".join(s.line() for s in states) + "\n" + json.dumps(rows)


# ----------------------------------------------------------------------------- running beside another harness

_ISOLATED = """set -e
mkdir -p /run/netns /etc/netns
mount -t tmpfs tandem-faults /run/netns
mount -t tmpfs tandem-faults /etc/netns
ip link set lo up
"$PYTHON" -m deploy.faults pg-forward 127.0.0.1 5432 "$PGSOCKET" &
forward=$!
trap 'kill $forward' EXIT
i=0; until pg_isready -q -h 127.0.0.1 -p 5432 || [ $i -ge 50 ]; do i=$((i+1)); sleep 0.2; done
"$@"
"""


def isolated(argv: list[str], socket: str = "/var/run/postgresql/.s.PGSQL.5432") -> int:
    """Run ``argv`` in a private network and mount namespace (``unshare``), for use beside another harness run.

    The harness's namespace, bridge and veth names are fixed, so two runs on one machine would tear
    each other down. Inside, ``/run/netns`` and ``/etc/netns`` are private, the bridge is private, and
    127.0.0.1:5432 forwards to the machine's PostgreSQL through its Unix socket (a file, so reachable
    from any network namespace). In CI, where nothing else runs, the tests run without it.
    """
    env = {**os.environ, "PYTHON": sys.executable, "PGSOCKET": socket}
    cmd = ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", _ISOLATED, "sh", *argv]
    return subprocess.run(cmd, env=env, cwd=Path(__file__).resolve().parents[1]).returncode


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _forward(host: str, port: int, socket: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(socket)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """``python -m deploy.faults isolated CMD...`` or ``pg-forward HOST PORT SOCKET``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["isolated"] and len(args) > 1:
        return isolated(args[1:])
    if args[:1] == ["pg-forward"] and len(args) == 4:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_forward(args[1], int(args[2]), args[3]))
        return 0
    print("usage: python -m deploy.faults isolated CMD... | pg-forward HOST PORT SOCKET", file=sys.stderr)
    return 2


def ensure_root_tools() -> str | None:
    """Why the disk fault cannot run here (``mount``/``umount`` missing, not root), or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    missing = [t for t in ("mount", "umount") if shutil.which(t) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


if __name__ == "__main__":
    sys.exit(main())
