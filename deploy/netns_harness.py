"""Run the three organisations' compose files as local processes, one Linux network namespace per organisation.

No Docker engine runs on our machines, so this harness plays it: it reads ``deploy/<org>/compose.yml`` with
:mod:`deploy.compose_file` (``.env`` interpolation, ``x-`` anchors and ``<<`` merges) and starts every
service's own ``entrypoint``/``command`` with its own ``environment`` as a process inside the organisation's
network namespace. A compose change that would break a real deployment (a wrong command, a missing variable,
a path that is not mounted, a broken health check) breaks the harness the same way.

Network. One bridge ``tandem-br0`` (10.77.0.1/24) in the root namespace; one namespace per organisation
(``tandem-coord`` 10.77.0.10, ``tandem-bank`` 10.77.0.20, ``tandem-telco`` 10.77.0.30), each joined to the
bridge by a veth pair (``tnd-coord``, ``tnd-bank``, ``tnd-telco`` on the root side; ``eth0`` inside). Names
resolve through ``/etc/netns/<ns>/hosts``, which ``ip netns exec`` mounts over ``/etc/hosts``: the three
namespace names everywhere, and inside an organisation its own compose service names (as on a compose
network). Organisations reach each other only across the bridge, so every byte between them crosses a veth
(where :meth:`Topology.capture` records it).

The names are machine-wide, so one run at a time: a topology holds ``/run/lock/tandem-netns.lock`` from
``network_up`` to ``down``; a second run waits for it, and ``down`` from the command line refuses while a
run holds it.

Mapping of the image onto this machine (documented, applied the same way to commands, environment values
and health checks):

- paths: each service's volume targets (``/state``, ``/data``, ``/trust``, ...) are rewritten to host
  directories: a named volume to ``<workdir>/<org>/volumes/<name>`` (mode 0700, as the Dockerfile makes
  ``/state``), a bind mount ``./x`` to ``<project dir>/x``. A path the compose file does not mount is not
  rewritten, so it fails here as it would in the container. Read-only mounts are not enforced;
- programs: ``PATH`` is this virtualenv's ``bin`` then the system's, so ``tandem-coordinator``, ``python`` and
  the image's system tools (``sh``, ``ssh-keygen``) resolve; the process environment is the Dockerfile's
  ``ENV`` plus the service's ``environment`` only (nothing leaks in from the caller's shell); the working
  directory is a per-service empty directory (the image's ``/app``);
- ``postgres`` services (image ``postgres``): the machine's PostgreSQL at 127.0.0.1:5432 stands in. The harness
  creates a fresh database per run (owned by ``POSTGRES_USER``, created with ``POSTGRES_PASSWORD`` if missing)
  and a TCP proxy in the root namespace on the bridge address 10.77.0.1:5432; inside the organisation the
  service name (``postgres``) resolves to that address, so the coordinator reaches its database across its
  veth, never over loopback. Connection URLs naming ``<service>:5432/<POSTGRES_DB>`` are pointed at the fresh
  database. Its health check is ``pg_isready`` through that path, from inside the namespace;
- ``depends_on`` conditions are honoured (``service_healthy`` runs the ``healthcheck`` test inside the
  namespace until it passes; ``service_completed_successfully`` waits for exit 0); ``restart`` policies
  are not (a fault test restarts a service itself with :meth:`Topology.restart`); ``ports`` are not needed
  (each namespace has its own address).

Command line (as root)::

    python -m deploy.netns_harness up      [--workdir DIR]   # the three organisations, jobs-ready; Ctrl-C stops
    python -m deploy.netns_harness run     [--workdir DIR]   # up, a PSI and a training job, audit, down
    python -m deploy.netns_harness capture [--workdir DIR]   # run, with tcpdump on the veths + TLS summary
    python -m deploy.netns_harness down    [--workdir DIR]   # remove namespaces, veths, processes left behind

What each party learns: nothing; this module only runs processes and wires networks.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from deploy.compose_file import ComposeError, ComposeProject, Service

__all__ = ["GATEWAY", "ORGS", "HarnessError", "Org", "Topology", "cleanup", "main", "preflight"]

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BRIDGE = "tandem-br0"
GATEWAY = "10.77.0.1"
PREFIX = 24
PG_HOST, PG_PORT = "127.0.0.1", 5432
DEFAULT_WORKDIR = Path("/tmp/tandem-netns")
STATE_FILE = "harness.json"
LOCK_FILE = Path("/run/lock/tandem-netns.lock")
"""Held for a topology's whole life: the namespace, veth and bridge names are machine-wide, so a second
harness run (another test session) waits for the first instead of tearing its namespaces down."""
LOCK_WAIT_S = 3600.0


class HarnessError(RuntimeError):
    """The topology could not be brought up, or a service failed (the message carries its log tail)."""


@dataclass(frozen=True)
class Org:
    """One organisation: its compose directory under ``deploy/``, namespace, address and root-side veth."""

    name: str
    netns: str
    address: str
    veth: str


ORGS = (Org("coordinator", "tandem-coord", "10.77.0.10", "tnd-coord"),
        Org("bank", "tandem-bank", "10.77.0.20", "tnd-bank"),
        Org("telco", "tandem-telco", "10.77.0.30", "tnd-telco"))


def preflight() -> str | None:
    """Why the harness cannot run here (not root, no ``ip``/``tcpdump``...), or None."""
    if os.geteuid() != 0:
        return "the namespace harness needs root (ip netns, veth, bridge)"
    missing = [tool for tool in ("ip", "sh", "ssh-keygen", "pg_isready") if shutil.which(tool) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise HarnessError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def _image_env(dockerfile: Path = REPO / "Dockerfile") -> dict[str, str]:
    """The Dockerfile's ``ENV`` settings (what every container starts with)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().upper().startswith("ENV "):
            for pair in line.strip()[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value.strip("'\"")
    return env


def _path_mapper(mapping: dict[str, Path]) -> re.Pattern[str] | None:
    if not mapping:
        return None
    targets = "|".join(re.escape(t) for t in sorted(mapping, key=len, reverse=True))
    return re.compile(rf"(?:(?<![\w.\-/])|(?<=://))({targets})(?=/|$|[^\w.\-])")


@dataclass
class _Running:
    org: str
    service: str
    proc: subprocess.Popen[bytes]
    log: Path


class Topology:
    """The three organisations' networks and services (see the module docstring).

    Args:
        workdir: Where volumes, project directories, logs and the state file go.
        project_dirs: Org -> its compose project directory (``.env``, ``./trust``, ``./data``...);
            default ``<workdir>/<org>/project``. The compose file itself is always ``deploy/<org>/compose.yml``.
        orgs: The organisations.
    """

    def __init__(self, workdir: Path, project_dirs: dict[str, Path] | None = None,
                 orgs: Sequence[Org] = ORGS) -> None:
        self.workdir = Path(workdir).resolve()
        self.orgs = {o.name: o for o in orgs}
        self.project_dirs = {o.name: (project_dirs or {}).get(o.name, self.workdir / o.name / "project")
                             for o in orgs}
        self.running: list[_Running] = []
        self.database: str | None = None
        self._proxy: subprocess.Popen[bytes] | None = None
        self._tcpdumps: list[subprocess.Popen[bytes]] = []
        self._lock: IO[str] | None = None
        self._network = False
        self._image_env = _image_env()

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Topology:
        """Bring the network up (services start with :meth:`up`)."""
        try:
            self.network_up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop everything and remove the network, also on errors."""
        self.down()

    def network_up(self) -> None:
        """Bridge, namespaces, veths, addresses and hosts files (anything left from an earlier run is removed).

        Waits (up to ``LOCK_WAIT_S``) while another harness run holds ``LOCK_FILE``.
        """
        self._lock = _take_lock(LOCK_WAIT_S)
        cleanup(self.workdir, orgs=self.orgs.values())
        for org in self.orgs:  # a fresh database per run, so fresh volumes too (the audit heads name its events)
            shutil.rmtree(self.workdir / org, ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for d in self.project_dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self._network = True
        self._save_state()
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for org in self.orgs.values():
            _ip("netns", "add", org.netns)
            _ip("link", "add", org.veth, "type", "veth", "peer", "name", "eth0", "netns", org.netns)
            _ip("link", "set", org.veth, "master", BRIDGE, "up")
            _ip("-n", org.netns, "addr", "add", f"{org.address}/{PREFIX}", "dev", "eth0")
            _ip("-n", org.netns, "link", "set", "eth0", "up")
            _ip("-n", org.netns, "link", "set", "lo", "up")

    def write_hosts(self) -> None:
        """``/etc/netns/<ns>/hosts`` of every organisation, from its compose file's service names."""
        for org in self.orgs.values():
            lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
            lines += [f"{o.address} {o.netns}" for o in self.orgs.values()]
            try:
                project = self.project(org.name)
            except ComposeError:
                project = None  # its .env is not written yet: only the namespace names
            if project is not None:
                own = [n for n, s in project.services.items() if not s.is_postgres]
                pg = [n for n, s in project.services.items() if s.is_postgres]
                if own:
                    lines.append(f"{org.address} {' '.join(own)}")
                if pg:
                    lines.append(f"{GATEWAY} {' '.join(pg)}")
            etc = Path("/etc/netns") / org.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def down(self) -> None:
        """Stop every service (newest first), the proxy and captures, drop the database, remove the network."""
        self.stop_capture()
        for run in reversed(self.running):
            self._terminate(run)
        self.running.clear()
        if self._proxy is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proxy.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proxy.wait(timeout=10)
            self._proxy = None
        self._save_state()  # nothing of ours runs any more: no stale process id for cleanup to act on
        if self._lock is not None:
            cleanup(self.workdir, orgs=self.orgs.values())
            self._lock.close()  # releases the lock
            self._lock = None
        self._network = False

    # ----------------------------------------------------------------- compose

    def project(self, org: str) -> ComposeProject:
        """``deploy/<org>/compose.yml`` with the organisation's current ``.env`` (read afresh each time)."""
        return ComposeProject.load(DEPLOY / org / "compose.yml", self.project_dirs[org])

    def volume(self, org: str, name: str) -> Path:
        """Host directory of a named volume (created mode 0700)."""
        path = self.workdir / org / "volumes" / name
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def _mapping(self, org: str, svc: Service, project: ComposeProject) -> dict[str, Path]:
        mapping: dict[str, Path] = {}
        for m in svc.mounts:
            if m.named:
                mapping[m.target] = self.volume(org, m.source)
            else:
                source = Path(m.source).expanduser()
                mapping[m.target] = (project.project_dir / source).resolve() if not source.is_absolute() else source
                mapping[m.target].mkdir(parents=True, exist_ok=True)
        return mapping

    def _rewrite(self, org: str, svc: Service, project: ComposeProject) -> tuple[list[str], dict[str, str],
                                                                                  list[str] | None]:
        """The service's argv, environment and health-check argv with paths and databases mapped."""
        mapping = self._mapping(org, svc, project)
        pattern = _path_mapper(mapping)

        def fix(text: str) -> str:
            if pattern is not None:
                text = pattern.sub(lambda m: str(mapping[m.group(1)]), text)
            for name, pg in project.services.items():
                if pg.is_postgres and self.database is not None:
                    db = re.escape(pg.environment.get("POSTGRES_DB", "postgres"))
                    text = re.sub(rf"(@{re.escape(name)}(?::\d+)?/){db}\b", rf"\g<1>{self.database}", text)
            return text

        argv = [fix(a) for a in svc.argv]
        env = {k: fix(v) for k, v in svc.environment.items()}
        check = svc.healthcheck
        return argv, env, ([fix(a) for a in check[0]] if check else None)

    def _process_env(self, org: str, service: str, env: dict[str, str]) -> dict[str, str]:
        home = self.workdir / org / "home"
        home.mkdir(parents=True, exist_ok=True)
        path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", **self._image_env, **env}

    def _cwd(self, org: str, service: str) -> Path:
        cwd = self.workdir / org / "app" / service
        cwd.mkdir(parents=True, exist_ok=True)
        return cwd

    # ----------------------------------------------------------------- services

    def up(self, org: str, services: Sequence[str] | None = None, timeout: float = 240.0) -> None:
        """Start ``services`` of ``org`` (default all) and their dependencies, honouring ``depends_on``.

        A one-shot service (``restart: "no"``, no health check) named in ``services`` is waited for; a
        service with a health check is waited for until healthy.

        Raises:
            HarnessError: a service exited, failed, or did not become healthy (with its log tail).
        """
        self.write_hosts()
        project = self.project(org)
        for name in project.order(list(services) if services else None):
            svc = project.services[name]
            for dep, condition in svc.depends_on.items():
                self._satisfy(org, project, dep, condition, timeout)
            if not self._is_running(org, name) and not (svc.one_shot and self._completed(org, name)):
                self._start(org, project, svc)
        for name in services or project.services:
            svc = project.services[name]
            if svc.one_shot:
                self._satisfy(org, project, name, "service_completed_successfully", timeout)
            elif svc.healthcheck or svc.is_postgres:
                self._satisfy(org, project, name, "service_healthy", timeout)

    def _satisfy(self, org: str, project: ComposeProject, name: str, condition: str, timeout: float) -> None:
        run = self._find(org, name)
        if run is None:
            raise HarnessError(f"{org}/{name} was never started")
        svc = project.services[name]
        if condition == "service_completed_successfully":
            try:
                code = run.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise HarnessError(f"{org}/{name} did not finish in {timeout:.0f}s:\n{self.tail(run)}") from None
            if code != 0:
                raise HarnessError(f"{org}/{name} exited with code {code}:\n{self.tail(run)}")
        elif condition == "service_healthy":
            self.wait_healthy(org, name, min(timeout, max(60.0, (svc.healthcheck or ([], 1, 60))[2])))
        elif run.proc.poll() not in (None, 0):
            raise HarnessError(f"{org}/{name} exited with code {run.proc.returncode}:\n{self.tail(run)}")

    def _start(self, org: str, project: ComposeProject, svc: Service) -> _Running:
        log = self.workdir / "logs" / f"{org}-{svc.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if svc.is_postgres:
            return self._start_postgres(org, project, svc, log)
        argv, env, _ = self._rewrite(org, svc, project)
        if not argv:
            raise HarnessError(f"{org}/{svc.name}: no command or entrypoint in {project.path}")
        with log.open("ab") as out:
            out.write(f"\n--- {time.strftime('%H:%M:%S')} start {argv!r}\n".encode())
            out.flush()
            proc = subprocess.Popen(["ip", "netns", "exec", self.orgs[org].netns, *argv], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self._process_env(org, svc.name, env), cwd=self._cwd(org, svc.name),
                                    start_new_session=True)
        run = _Running(org, svc.name, proc, log)
        self.running.append(run)
        self._save_state()
        return run

    def _start_postgres(self, org: str, project: ComposeProject, svc: Service, log: Path) -> _Running:
        """The fresh database on the machine's PostgreSQL and the proxy on the bridge address."""
        import psycopg
        from psycopg import sql

        env = svc.environment
        user = env.get("POSTGRES_USER", "postgres")
        if self.database is None:
            self.database = f"tandem_netns_{secrets.token_hex(4)}"
            with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname="postgres", autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(user), sql.Literal(env.get("POSTGRES_PASSWORD", ""))))
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(user)))
            self._save_state()
        if self._proxy is None or self._proxy.poll() is not None:
            with log.open("ab") as out:
                self._proxy = subprocess.Popen(
                    [sys.executable, "-m", "deploy.tcp_proxy", GATEWAY, str(PG_PORT), PG_HOST, str(PG_PORT)],
                    stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
            self._save_state()
        run = _Running(org, svc.name, self._proxy, log)
        self.running = [r for r in self.running if (r.org, r.service) != (org, svc.name)] + [run]
        return run

    def _pg_ready(self, org: str, svc: Service) -> bool:
        user = svc.environment.get("POSTGRES_USER", "postgres")
        return self.exec_raw(org, ["pg_isready", "-q", "-h", svc.name, "-p", str(PG_PORT), "-U", user,
                                   "-d", self.database or "postgres"], timeout=10).returncode == 0

    def wait_healthy(self, org: str, name: str, timeout: float) -> None:
        """Run the service's health check inside its namespace until it passes (it must stay alive meanwhile)."""
        project = self.project(org)
        deadline = time.monotonic() + timeout
        interval = 0.5
        while time.monotonic() < deadline:
            run = self._find(org, name)
            if run is None or run.proc.poll() is not None:
                code = None if run is None else run.proc.returncode
                raise HarnessError(f"{org}/{name} exited (code {code}) before it was healthy:\n"
                                   f"{self.tail(run) if run else ''}")
            if self.healthy(org, name, project):
                return
            time.sleep(interval)
            interval = min(interval * 1.5, 3.0)
        run = self._find(org, name)
        raise HarnessError(f"{org}/{name} not healthy after {timeout:.0f}s:\n{self.tail(run) if run else ''}")

    def healthy(self, org: str, name: str, project: ComposeProject | None = None) -> bool:
        """Whether the service's health check passes now (a service without one: whether it runs)."""
        project = project or self.project(org)
        svc = project.services[name]
        if svc.is_postgres:
            return self._pg_ready(org, svc)
        _, env, check = self._rewrite(org, svc, project)
        if check is None:
            return self._is_running(org, name)
        return self.exec_raw(org, check, env=env, timeout=30, service=name).returncode == 0

    def exec(self, org: str, service: str, argv: Sequence[str], *, timeout: float = 600.0,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` like ``docker compose exec <service>``: its namespace, environment and path mapping.

        Paths under the service's mounts in ``argv`` are mapped too (``/data/x.csv`` -> its host directory).

        Raises:
            HarnessError: with ``check``, a non-zero exit (stdout and stderr in the message).
        """
        project = self.project(org)
        svc = project.services[service]
        shadow = Service(service, {**svc.spec, "entrypoint": None, "command": list(argv)})
        mapped, env, _ = self._rewrite(org, shadow, project)
        proc = self.exec_raw(org, mapped, env=env, timeout=timeout, service=service)
        if check and proc.returncode != 0:
            raise HarnessError(f"{org}/{service}: {' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n"
                               f"{proc.stderr}")
        return proc

    def exec_raw(self, org: str, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60.0,
                 service: str = "exec") -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as is inside ``org``'s namespace (no path mapping)."""
        try:
            return subprocess.run(["ip", "netns", "exec", self.orgs[org].netns, *argv], capture_output=True,
                                  text=True, timeout=timeout, env=self._process_env(org, service, env or {}),
                                  cwd=self._cwd(org, service), stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(list(argv), 124, str(exc.stdout or ""), f"timed out after {timeout}s")

    def stop(self, org: str, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop a service: ``sig`` to its process group (SIGKILL after 30 s for SIGTERM)."""
        run = self._find(org, name)
        if run is not None:
            self._terminate(run, sig)
            self.running.remove(run)

    def send_signal(self, org: str, name: str, sig: int) -> None:
        """Send ``sig`` to a running service's process group (SIGSTOP freezes it mid-work, SIGCONT resumes it)."""
        run = self._find(org, name)
        if run is None or run.proc.poll() is not None:
            raise HarnessError(f"{org}/{name} is not running")
        os.killpg(run.proc.pid, sig)

    def restart(self, org: str, name: str, sig: int = signal.SIGTERM, timeout: float = 240.0) -> None:
        """Stop a service (with ``sig``: SIGKILL for a crash) and start it again as compose would restart it."""
        self.stop(org, name, sig)
        self.up(org, [name], timeout=timeout)

    def set_link(self, org: str, up: bool) -> None:
        """Cut (``up=False``) or restore an organisation's link to the others (its root-side veth)."""
        _ip("link", "set", self.orgs[org].veth, "up" if up else "down")

    def _terminate(self, run: _Running, sig: int = signal.SIGTERM) -> None:
        if run.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.proc.pid, sig)
            try:
                run.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait(timeout=10)

    def _find(self, org: str, name: str) -> _Running | None:
        return next((r for r in reversed(self.running) if (r.org, r.service) == (org, name)), None)

    def _is_running(self, org: str, name: str) -> bool:
        run = self._find(org, name)
        return run is not None and run.proc.poll() is None

    def _completed(self, org: str, name: str) -> bool:
        run = self._find(org, name)
        return run is not None and run.proc.poll() == 0

    def logs(self, org: str, name: str) -> Path:
        """The service's log file."""
        return self.workdir / "logs" / f"{org}-{name}.log"

    def tail(self, run: _Running | None, lines: int = 30) -> str:
        """The last lines of a service's log."""
        if run is None:
            return ""
        with contextlib.suppress(OSError):
            return "\n".join(run.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _save_state(self) -> None:
        pids = [r.proc.pid for r in self.running] + ([self._proxy.pid] if self._proxy else [])
        pids += [p.pid for p in self._tcpdumps]
        state = {"pids": list(dict.fromkeys(pids)), "database": self.database, "network": self._network}
        (self.workdir / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    # ----------------------------------------------------------------- capture

    def start_capture(self, out_dir: Path) -> list[Path]:
        """Start ``tcpdump -i <veth> -w <out_dir>/<veth>.pcap`` on every organisation's link; return the files."""
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for org in self.orgs.values():
            path, err = out_dir / f"{org.veth}.pcap", out_dir / f"{org.veth}.tcpdump.log"
            with err.open("wb") as log:
                self._tcpdumps.append(subprocess.Popen(
                    ["tcpdump", "-i", org.veth, "-n", "-U", "-s", "0", "-w", str(path)], stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))
            deadline = time.monotonic() + 15
            while b"listening on" not in err.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.1)
            files.append(path)
        self._save_state()
        return files

    def stop_capture(self) -> None:
        """Stop the captures (tcpdump flushes its files on SIGINT)."""
        for p in self._tcpdumps:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        for p in self._tcpdumps:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self._tcpdumps.clear()

    @contextlib.contextmanager
    def capture(self, out_dir: Path) -> Iterator[list[Path]]:
        """:meth:`start_capture` for the duration of the block."""
        try:
            yield self.start_capture(out_dir)
        finally:
            self.stop_capture()


def _take_lock(wait: float) -> IO[str]:
    """The machine-wide harness lock (see ``LOCK_FILE``), waiting up to ``wait`` seconds for it.

    Raises:
        HarnessError: another run held it all that time.
    """
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    handle = LOCK_FILE.open("a+")
    deadline, told = time.monotonic() + wait, False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise HarnessError(f"another namespace harness run holds {LOCK_FILE} (its process id is in it); "
                                   "wait for it to finish") from None
            if not told:
                print(f"waiting for another namespace harness run to finish ({LOCK_FILE})", file=sys.stderr)
                told = True
            time.sleep(2.0)
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle


def cleanup(workdir: Path = DEFAULT_WORKDIR, orgs: Sequence[Org] | None = None) -> list[str]:
    """Remove what a harness run left; safe to call when nothing is left; returns what it did.

    That is: processes in the namespaces and from its state file, the namespaces, veths, bridge, hosts
    files and the run's database.
    """
    done: list[str] = []
    orgs = list(orgs or ORGS)
    state_file = Path(workdir) / STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    for pid in state.get("pids", []):
        if _harness_helper(pid):  # a process outside the namespaces: only if it is still the one we started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                done.append(f"killed {pid}")
    for org in orgs:
        if org.netns in _ip("netns", "list", check=False).stdout.split():
            for pid in _ip("netns", "pids", org.netns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
                    done.append(f"killed {pid} in {org.netns}")
            time.sleep(0.2)
            _ip("netns", "del", org.netns, check=False)
            done.append(f"deleted namespace {org.netns}")
        if _ip("link", "show", org.veth, check=False).returncode == 0:
            _ip("link", "del", org.veth, check=False)
            done.append(f"deleted veth {org.veth}")
        shutil.rmtree(Path("/etc/netns") / org.netns, ignore_errors=True)
    if _ip("link", "show", BRIDGE, check=False).returncode == 0:
        _ip("link", "del", BRIDGE, check=False)
        done.append(f"deleted bridge {BRIDGE}")
    if state.get("database"):
        _drop_database(state["database"])
        done.append(f"dropped database {state['database']}")
    if state_file.exists():
        state_file.write_text(json.dumps({"pids": [], "database": None, "network": False}), encoding="utf-8")
    return done


def _harness_helper(pid: int) -> bool:
    """Whether ``pid`` is still a PostgreSQL proxy or tcpdump of the harness (not a reused process id)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = b" ".join(argv).decode(errors="replace")
    return ("deploy.tcp_proxy" in text and GATEWAY in text) or ("tcpdump" in text and "tnd-" in text)


def _drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with contextlib.suppress(psycopg.Error), psycopg.connect(host=PG_HOST, port=PG_PORT, dbname="postgres",
                                                             autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deploy.netns_harness up|run|capture|down``."""
    p = argparse.ArgumentParser(prog="python -m deploy.netns_harness", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["up", "run", "capture", "down"])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--n", type=int, default=2000, help="people in the synthetic population")
    args = p.parse_args(argv)
    if args.command == "down":
        try:
            lock = _take_lock(0.0)  # never tear down a run that is still going
        except HarnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        with lock:
            print("\n".join(cleanup(args.workdir)) or "nothing to clean up")
        return 0
    why = preflight()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    from deploy import three_orgs

    try:
        with Topology(args.workdir) as topo:
            files = topo.start_capture(args.workdir / "capture") if args.command == "capture" else []
            deployment = three_orgs.bring_up(topo, n=args.n)
            if args.command == "up":
                print("up: the three organisations are serving; Ctrl-C stops and removes everything")
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
                return 0
            three_orgs.run_jobs(deployment)
            problems: list[str] = []
            if files:
                from deploy.tls_capture import analyse

                topo.stop_capture()
                summary = analyse(files, {o.address: o.name for o in topo.orgs.values()})
                print(summary.table())
                problems = summary.problems()
            check = three_orgs.verify_audit(deployment)
            print(check.text)
            if not check.ok or problems:
                return 1
    except (HarnessError, ComposeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
