"""Keeps one node's Flower SuperNode running: a small supervisor process the node's training service starts.

A SuperNode process exits for good when the SuperLink refuses to activate it, as it does right after the
node restarted: the SuperLink counts the node's previous SuperNode as online until its heartbeats lapse
(up to two 30 s heartbeat intervals). Until the SuperNode is back, the coordinator cannot run this party's
training rounds (a run waits for it, then fails), so this process starts it again whenever it exits, with
backoff (2 s doubling to 16 s, back to 2 s after a minute up).

Why a process of its own: the SuperNode runs in a session of its own, and Linux ties the "die with your
parent" request (``PR_SET_PDEATHSIG``) to the lifetime of the *thread* that started it, so only a main
thread can start it safely. This process starts every SuperNode from its main thread, and the node service
starts this process from its main thread with the same request: when the node dies, however it dies, this
process gets SIGTERM and stops the SuperNode, and if this process is killed the SuperNode gets SIGTERM.

Usage (by :mod:`node.jobs.training.service`)::

    TANDEM_FLOWER_ROUND_TOKEN=... python -m node.flower.supernode_keeper --party telco --state-dir DIR
        --service-url URL --superlink HOST:PORT --ca CA.pem --key KEY [--poll-interval 0.1]

Every SuperNode it starts is a :class:`node.flower.supernode.SuperNodeService`: TLS, the node's
authentication key, and the pinned ClientApp runner (never a FAB's code). The node's round token comes
in this process's environment (not its command line, which other local users can read) and goes on to
the runner.

What it learns: nothing; it only runs processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Backoff", "command", "keep_running", "main", "watch_parent"]

logger = logging.getLogger("node.flower.supernode_keeper")  # also when run as __main__


class _Node(Protocol):
    def start(self) -> None: ...

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Timing of the restarts (seconds)."""

    check: float = 1.0
    first: float = 2.0
    longest: float = 16.0
    stable: float = 60.0


def keep_running(start: Callable[[], _Node], stop: threading.Event, backoff: Backoff = Backoff()) -> int:
    """Start a node with ``start()`` and again whenever it is no longer alive, until ``stop`` is set.

    Returns:
        How many times the node was started.
    """
    node: _Node | None = None
    starts, delay, up_since = 0, backoff.first, time.monotonic()
    try:
        while not stop.is_set():
            if node is not None and node.alive():
                if time.monotonic() - up_since > backoff.stable:
                    delay = backoff.first
                stop.wait(backoff.check)
                continue
            if node is not None:
                logger.warning("the SuperNode exited; starting it again in %.0f s (see its log)", delay)
                node.stop()
                node = None
                if stop.wait(delay):
                    break
                delay = min(delay * 2, backoff.longest)
            try:
                node = start()
            except Exception:  # noqa: BLE001 - keep trying
                logger.exception("the SuperNode could not be started")
                stop.wait(delay)
                continue
            starts, up_since = starts + 1, time.monotonic()
    finally:
        if node is not None:
            node.stop()
    return starts


def watch_parent(parent: int, stop: threading.Event, interval: float = 1.0,
                 exit_after: Callable[[], None] | None = None, grace: float = 15.0) -> None:
    """Set ``stop`` once this process no longer has ``parent`` as its parent (the node died).

    Belt and braces for ``PR_SET_PDEATHSIG``, which is not delivered when the node started this process
    from a thread that has since ended: an orphaned supervisor would otherwise restart SuperNodes forever.
    If the main thread is still busy ``grace`` seconds later (e.g. waiting on a SuperNode that never comes
    up), ``exit_after`` ends the process; the SuperNode it started dies with it (``PR_SET_PDEATHSIG``).
    """
    while not stop.wait(interval):
        if os.getppid() != parent:
            logger.warning("the node process %d is gone; stopping the SuperNode", parent)
            if exit_after is not None:  # armed first: ``stop.set`` itself may block behind a stuck main thread
                timer = threading.Timer(grace, exit_after)
                timer.daemon = True
                timer.start()
            stop.set()
            return


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m node.flower.supernode_keeper", description=__doc__.splitlines()[0])
    p.add_argument("--party", required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--service-url", required=True)
    p.add_argument("--superlink", required=True)
    p.add_argument("--ca", type=Path, required=True)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--poll-interval", type=float, default=0.1)
    return p


def command(party: str, state_dir: Path, service_url: str, superlink: str, ca: Path, key: Path,
            poll_interval: float) -> list[str]:
    """The arguments of this module's command line (after ``python -m node.flower.supernode_keeper``)."""
    return ["--party", party, "--state-dir", str(state_dir), "--service-url", service_url, "--superlink", superlink,
            "--ca", str(ca), "--key", str(key), "--poll-interval", str(poll_interval)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the supervisor until SIGTERM or SIGINT."""
    from node.flower.supernode import SuperNodeService
    from protocols.wire.flower_round import ROUND_TOKEN_ENV

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        # not ``stop.set()`` here: a handler runs on the main thread between bytecodes, possibly inside
        # ``stop.set``/``stop.wait`` holding the event's lock, and would wait on itself for ever (seen: an
        # orphaned supervisor deadlocked in Event.set after SIGTERM arrived twice while it stopped its node)
        threading.Thread(target=stop.set, name="stop-on-signal", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=watch_parent, args=(os.getppid(), stop), kwargs={"exit_after": lambda: os._exit(0)},
                     name="parent-watch", daemon=True).start()

    def start() -> SuperNodeService:
        node = SuperNodeService(args.state_dir, args.party, args.service_url, args.superlink, args.ca, args.key,
                                poll_interval=args.poll_interval, service_token=os.environ.get(ROUND_TOKEN_ENV))
        node.start()
        logger.info("SuperNode started for %s against %s", args.party, args.superlink)
        return node

    keep_running(start, stop)
    return 0


if __name__ == "__main__":
    # Leave without interpreter finalisation: the imported gRPC/Flower machinery can hang there (seen as
    # supervisors left running after their SuperNode had stopped), and there is nothing left to flush.
    code = main()
    logging.shutdown()
    os._exit(code)
