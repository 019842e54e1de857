"""Start ``flower-supernode`` with its fixed poll sleeps shortened (Flower 1.42 has no setting).

In flwr 1.42 the SuperNode's main loop (``flwr.supernode.start_client_internal``) sleeps a hard-coded
3 s after every empty pull from the SuperLink and 0.5 s while it waits for the ClientApp's reply;
neither has a flag or environment variable. This launcher replaces that one module's ``time`` with
a proxy whose ``sleep`` is capped at ``TANDEM_SUPERNODE_POLL_INTERVAL`` seconds (default 0.1),
then runs the stock ``flower-supernode`` entry point with the same arguments. Nothing else in
Flower is touched; the SuperExec's own poll is set through Flower's documented
``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` environment variable (the caller's job).

Usage: ``python -m node.flower.fastpoll <flower-supernode arguments>``

Cost: an idle SuperNode pulls the SuperLink 1/interval times per second instead of once per 3 s.

It also ends the SuperNode when one of its background threads dies (``exit_when_a_thread_dies``). Flower's
heartbeat sender (``flwr.supercore.heartbeat``) retries only what it counts as transient: a 401 from a
SuperLink that restarted with the coordinator and has not yet registered this node's key again kills the
thread, and the SuperNode lives on without heartbeats, so the SuperLink counts it offline and every round
of the next attempt waits for it in vain (seen in the coordinator-restart fault test: attempt 2 failed
after 0 rounds). Exiting instead lets ``node.flower.supernode_keeper`` start a fresh SuperNode, which
connects once the key is registered.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from types import ModuleType
from typing import Any

POLL_ENV = "TANDEM_SUPERNODE_POLL_INTERVAL"
DEFAULT_POLL_INTERVAL = 0.1
THREAD_DIED_EXIT = 75
"""Exit status of a SuperNode ended because a background thread died (the keeper starts another)."""


class CappedTime:
    """Proxy of the ``time`` module whose ``sleep`` never exceeds ``cap`` seconds."""

    def __init__(self, cap: float) -> None:
        if cap <= 0:
            raise ValueError("poll interval must be positive")
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        """Sleep ``min(seconds, cap)``."""
        time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def patch_supernode_loop(cap: float) -> ModuleType:
    """Cap the sleeps of Flower's SuperNode loop; return the patched module.

    Raises:
        RuntimeError: The installed Flower no longer has the expected patch point.
    """
    from flwr.supernode import start_client_internal as loop  # noqa: PLC0415

    if getattr(loop, "time", None) is not time:
        raise RuntimeError("flwr.supernode.start_client_internal no longer uses `time`; update fastpoll")
    loop.time = CappedTime(cap)  # type: ignore[attr-defined,assignment]
    return loop


def exit_when_a_thread_dies() -> None:
    """End this process (status ``THREAD_DIED_EXIT``) when any thread but the main one raises and dies."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        detail = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        sys.stderr.write(f"tandem: SuperNode thread {name} died; ending this SuperNode so that a fresh one "
                         f"starts (exit {THREAD_DIED_EXIT}):\n{detail}")
        sys.stderr.flush()
        os._exit(THREAD_DIED_EXIT)

    threading.excepthook = hook


def main() -> None:
    """Patch the loop and hand over to the stock ``flower-supernode`` entry point."""
    exit_when_a_thread_dies()
    patch_supernode_loop(float(os.environ.get(POLL_ENV, DEFAULT_POLL_INTERVAL)))
    from flwr.supernode.cli import flower_supernode  # noqa: PLC0415

    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
