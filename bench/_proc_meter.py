"""CPU-seconds and peak RSS of every process a benchmark starts, by role (psutil over its process tree).

:class:`ProcessTreeMeter` polls the descendants of this process every ``interval`` seconds. CPU at an
instant is

    sum over live (and zombie) descendants of  own user+system  +  user+system of the children it reaped
    + user+system of the children this process reaped (``RUSAGE_CHILDREN``)

so a process that exits between two polls is still counted: its parent reaps it and its CPU moves
into the parent's reaped-children times (or stays visible while it is a zombie). This process is made
a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so descendants orphaned by a parent that exits
are re-parented here rather than to init, and stay counted (a zombie's times stay readable). The
meter reaps those it saw under another parent, so that their CPU lands in ``RUSAGE_CHILDREN``; it
never reaps a child this process started (that would hide the child's exit status from its
``subprocess`` owner), so an orphan first seen as a direct child stays a zombie until the bench exits.

CPU of a window is the difference of two :meth:`ProcessTreeMeter.cpu` snapshots. By role, the CPU of a
reaped process counts for the role of the process that reaped it.

Peak RSS per process is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``), read at
every poll; a process that lives less than one interval may be missed.

Roles name the process by what it runs (its command line) and the party of the nearest node or
coordinator process above it, e.g. ``coordinator``, ``coordinator/superlink``,
``coordinator/serverapp``, ``bank/node``, ``bank/supernode``, ``bank/worker`` (a process running
its parent's command line: a forked Paillier worker), ``bank/cli`` (a node CLI command) and
``bench/reaped`` (processes this one reaped: the bench's CLI calls and re-parented orphans).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import resource
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

__all__ = ["ProcessTreeMeter", "cpu_delta", "in_child"]

_KINDS = (
    ("tandem-coordinator", "coordinator"),
    ("tandem-bank", "node"),
    ("tandem-telco", "node"),
    ("flower-superlink", "superlink"),
    ("coordinator.flower.control_gate", "superlink"),
    ("flower-superexec", "superexec"),
    ("flwr-serverapp", "serverapp"),
    ("node.flower.fastpoll", "supernode"),
    ("flower-supernode", "supernode"),
    ("warm_clientapp", "clientapp-runner"),
    ("flwr-clientapp", "clientapp"),
    ("multiprocessing", "worker"),
)
_PARTIES = {"tandem-coordinator": "coordinator", "tandem-bank": "bank", "tandem-telco": "telco"}
_PR_SET_CHILD_SUBREAPER = 36
_BENCH_CLI = "bench/reaped"


@dataclass
class _Seen:
    """What the meter knows of one process (keyed by pid and start time)."""

    party: str
    kind: str
    cmdline: str
    first_ppid: int
    peak_rss_kb: int = 0

    @property
    def role(self) -> str:
        return self.party if self.kind == "coordinator" else f"{self.party}/{self.kind}"


def _kind_and_party(cmdline: str, parent: _Seen | None) -> tuple[str, str]:
    party = parent.party if parent is not None else "bench"
    for marker, name in _PARTIES.items():
        if marker in cmdline:
            party = name
    if parent is not None and cmdline == parent.cmdline:
        return "worker", party
    for marker, kind in _KINDS:
        if marker in cmdline:
            if marker in _PARTIES and "serve" not in cmdline.split():
                kind = "cli"  # a node or coordinator CLI command (init, register-dataset, approve...)
            return kind, party
    argv = cmdline.split()
    return (Path(argv[0]).name if argv else "unknown"), party


def _peak_rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _become_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0


class ProcessTreeMeter:
    """Background sampler of this process's descendants (see the module docstring)."""

    def __init__(self, interval: float = 0.5) -> None:
        """Nothing is sampled before ``__enter__``; ``interval`` is the poll period in seconds."""
        self.interval = interval
        self._me = psutil.Process()
        self._seen: dict[tuple[int, float], _Seen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.subreaper = False

    def __enter__(self) -> ProcessTreeMeter:
        self.subreaper = _become_subreaper()
        self._thread = threading.Thread(target=self._loop, name="proc-meter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(psutil.Error):
                self.cpu()

    def cpu(self) -> dict[str, float]:
        """CPU-seconds so far by role (a snapshot; also refreshes roles and peak RSS)."""
        with self._lock:
            by_role: dict[str, float] = {}
            for proc in self._me.children(recursive=True):
                seen = self._see(proc)
                if seen is None:
                    continue
                try:
                    t = proc.cpu_times()
                except psutil.Error:
                    continue
                cpu = t.user + t.system + t.children_user + t.children_system
                by_role[seen.role] = by_role.get(seen.role, 0.0) + cpu
            own = resource.getrusage(resource.RUSAGE_CHILDREN)
            by_role[_BENCH_CLI] = by_role.get(_BENCH_CLI, 0.0) + own.ru_utime + own.ru_stime
            return by_role

    def _see(self, proc: psutil.Process) -> _Seen | None:
        try:
            key = (proc.pid, proc.create_time())
            ppid = proc.ppid()
        except psutil.Error:
            return None
        seen = self._seen.get(key)
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            cmdline = seen.cmdline if seen is not None else ""
        # new, or it has exec'd since: a process sampled between fork and exec shows its parent's command
        # line (seen under load: the telco's node counted as the bench's own "python"), so classify it again
        if seen is None or cmdline != seen.cmdline:
            parent = next((s for (pid, _), s in self._seen.items() if pid == ppid), None)
            kind, party = _kind_and_party(cmdline, parent)
            first_ppid = seen.first_ppid if seen is not None else ppid
            seen = self._seen[key] = _Seen(party, kind, cmdline, first_ppid)
        seen.peak_rss_kb = max(seen.peak_rss_kb, _peak_rss_kb(proc.pid))
        if ppid == self._me.pid and seen.first_ppid != ppid:
            self._reap_orphan(proc)
        return seen

    @staticmethod
    def _reap_orphan(proc: psutil.Process) -> None:
        """Reap a re-parented descendant once it is a zombie (its CPU then counts in RUSAGE_CHILDREN)."""
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)

    def peak_rss_mb(self) -> dict[str, float]:
        """Largest peak RSS (MB) of any one process of each role (roles only ever seen as zombies left out)."""
        with self._lock:
            out: dict[str, float] = {}
            for seen in self._seen.values():
                if seen.peak_rss_kb:
                    out[seen.role] = max(out.get(seen.role, 0.0), seen.peak_rss_kb / 1024)
            return dict(sorted(out.items()))

    def process_counts(self) -> dict[str, int]:
        """How many processes of each role were seen."""
        with self._lock:
            out: dict[str, int] = {}
            for seen in self._seen.values():
                out[seen.role] = out.get(seen.role, 0) + 1
            return dict(sorted(out.items()))


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU-seconds by role spent between two :meth:`ProcessTreeMeter.cpu` snapshots."""
    roles = sorted(set(before) | set(after))
    return {r: round(after.get(r, 0.0) - before.get(r, 0.0), 3) for r in roles}


def _child(target: Callable[..., dict[str, Any]], args: tuple[Any, ...], queue: Any) -> None:
    queue.put(target(*args))


def in_child(target: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``target(*args)`` in a forked child and return its figures (its peak RSS is its own)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, queue))
    proc.start()
    result: dict[str, Any] = queue.get()
    proc.join()
    return result
