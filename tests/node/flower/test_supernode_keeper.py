"""The node keeps its SuperNode running: started again when it exits (stand-in SuperNode, no processes)."""

from __future__ import annotations

import threading

from node.flower.supernode_keeper import Backoff, command, keep_running

QUICK = Backoff(check=0.001, first=0.001, longest=0.002, stable=60.0)


class FakeSuperNode:
    """A SuperNode that dies at once for the first ``refused`` starts (the SuperLink refused to activate it)."""

    def __init__(self, started: list[FakeSuperNode], refused: int, stop: threading.Event, stay_up: int) -> None:
        self.started, self.refused, self.stop_event, self.stay_up = started, refused, stop, stay_up
        self.running = self.stopped = False
        self.checks = 0

    def start(self) -> None:
        self.started.append(self)
        self.running = len(self.started) > self.refused

    def alive(self) -> bool:
        self.checks += 1
        if self.running and self.checks >= self.stay_up:
            self.stop_event.set()  # end the test once the good one has been watched for a while
        return self.running

    def stop(self) -> None:
        self.running, self.stopped = False, True


def test_a_supernode_that_exits_is_started_again_until_it_stays_up() -> None:
    # Prepare
    started: list[FakeSuperNode] = []
    stop = threading.Event()

    def start() -> FakeSuperNode:
        node = FakeSuperNode(started, refused=2, stop=stop, stay_up=5)
        node.start()
        return node

    # Execute
    starts = keep_running(start, stop, QUICK)

    # Assert: two refused starts, then one that stayed up; every one stopped in the end
    assert starts == 3 and len(started) == 3
    assert [n.running for n in started] == [False, False, False] and all(n.stopped for n in started)
    assert started[-1].checks >= 5


def test_a_failing_start_is_retried() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def start() -> FakeSuperNode:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("flower-supernode not found")
        node = FakeSuperNode([], refused=0, stop=stop, stay_up=1)
        node.start()
        return node

    assert keep_running(start, stop, QUICK) == 1 and len(calls) == 3


def test_the_command_line_names_every_setting() -> None:
    from pathlib import Path

    from node.flower.supernode_keeper import _parser

    args = _parser().parse_args(command("telco", Path("/s"), "http://127.0.0.1:1", "127.0.0.1:2", Path("/ca"),
                                        Path("/k"), 0.2))

    assert (args.party, args.state_dir, args.superlink, args.poll_interval) == ("telco", Path("/s"), "127.0.0.1:2",
                                                                                0.2)


def test_the_supervisor_stops_when_its_node_is_gone() -> None:
    import os
    import threading

    from node.flower.supernode_keeper import watch_parent

    stop = threading.Event()
    watcher = threading.Thread(target=watch_parent, args=(os.getppid() + 999_999, stop, 0.01))
    watcher.start()
    watcher.join(timeout=5)
    assert stop.is_set() and not watcher.is_alive()

    stop_alive = threading.Event()
    watching = threading.Thread(target=watch_parent, args=(os.getppid(), stop_alive, 0.01), daemon=True)
    watching.start()
    watching.join(timeout=0.2)
    assert watching.is_alive() and not stop_alive.is_set()  # the parent is still there: keep going
    stop_alive.set()
    watching.join(timeout=5)


def test_an_orphaned_supervisor_whose_main_thread_is_stuck_still_ends() -> None:
    import os
    import threading

    from node.flower.supernode_keeper import watch_parent

    ended = threading.Event()
    watcher = threading.Thread(target=watch_parent, args=(os.getppid() + 999_999, threading.Event(), 0.01),
                               kwargs={"exit_after": ended.set, "grace": 0.05})
    watcher.start()
    watcher.join(timeout=5)
    assert ended.wait(5)  # after the grace period, on a timer of its own


class _StuckEvent(threading.Event):
    """An event whose ``set`` never returns: its lock held by a main thread that is stuck."""

    def set(self) -> None:
        threading.Event().wait()


def test_an_orphaned_supervisor_ends_even_when_stopping_blocks() -> None:
    import os

    from node.flower.supernode_keeper import watch_parent

    ended = threading.Event()
    watcher = threading.Thread(target=watch_parent, args=(os.getppid() + 999_999, _StuckEvent(), 0.01),
                               kwargs={"exit_after": ended.set, "grace": 0.05}, daemon=True)
    watcher.start()
    assert ended.wait(5), "exit_after never ran: the orphan would live on"


def test_a_clientapp_runner_whose_supernode_died_ends_even_mid_task(monkeypatch) -> None:
    """The warm ClientApp runner stops when its SuperNode is gone, and exits after a grace period even if a task
    is still stuck retrying a push to the dead SuperNode (Flower's client retries without end)."""
    import subprocess
    import sys

    from node.flower import warm_clientapp

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer exists: the SuperNode died
    exited = threading.Event()
    monkeypatch.setattr(warm_clientapp.os, "_exit", lambda code: exited.set())
    stop = threading.Event()
    warm_clientapp._watch_parent(gone.pid, stop)
    warm_clientapp._exit_after_stop(stop, grace=0.05)

    assert stop.wait(5), "the runner was not told to stop"
    assert exited.wait(5), "the runner would live on, stuck in its task"


def test_a_clientapp_runner_stopped_by_a_signal_mid_task_still_exits(monkeypatch) -> None:
    from node.flower import warm_clientapp

    exited = threading.Event()
    monkeypatch.setattr(warm_clientapp.os, "_exit", lambda code: exited.set())
    stop = threading.Event()
    warm_clientapp._exit_after_stop(stop, grace=0.05)
    assert not exited.wait(0.2)  # running: nothing ends it
    stop.set()  # SIGTERM's handler; the main thread stays stuck in its task
    assert exited.wait(5)


def test_a_supernode_whose_heartbeat_thread_dies_exits_so_the_keeper_starts_another() -> None:
    """Flower's heartbeat sender dies on a 401 (a SuperLink that restarted and lost the node's key); the
    SuperNode must then exit (``fastpoll.exit_when_a_thread_dies``) rather than live on unheard."""
    import subprocess
    import sys

    from node.flower.fastpoll import THREAD_DIED_EXIT

    script = """
import time, httpx
from flwr.supercore.heartbeat import HeartbeatSender
from node.flower.fastpoll import exit_when_a_thread_dies
exit_when_a_thread_dies()
def beat():
    request = httpx.Request("POST", "https://superlink:9092/v1/fleet/send-node-heartbeat")
    raise httpx.HTTPStatusError("401", request=request, response=httpx.Response(401, request=request))
HeartbeatSender(beat).start()
time.sleep(60)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == THREAD_DIED_EXIT, done.stderr[-2000:]
    assert "SuperNode thread" in done.stderr and "401" in done.stderr
