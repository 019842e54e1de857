"""The node's ClientApp runner: the only way a Tandem SuperNode executes a ClientApp.

Every Tandem SuperNode (:class:`node.flower.supernode.SuperNodeService`, whichever path starts it: the
node's ``serve``, its keeper, the local federation) runs with ``--isolation process``: it starts no
SuperExec and no ``flwr-clientapp`` and waits for an outside process to claim its ClientApp tasks over
its Runtime API. This module is that process. It claims each task (``AcquireTask``, signed with the
SuperNode's SuperExec secret so no other local process can claim one), pulls the message, runs the
ClientApp in-process, and pushes the reply and the task's final status, with the task heartbeat
running meanwhile: the same Runtime API calls ``flwr-clientapp`` makes, minus the start-up.

It pins the code a party runs. The ClientApp is loaded once, at start, from the installed package
(``--app``, Tandem's shim by default); a run's FAB is never installed, put on ``sys.path`` or
imported. Before a message is handed to the shim the run's FAB is checked against the pin
(:class:`PinnedApp`): it must be Tandem's own app (publisher and name), name the pinned ``clientapp``
component, and carry no file but its ``pyproject.toml`` (no code). Any other FAB is refused with an
error reply that names what was wrong (the ServerApp reports it; this runner logs it), and nothing
of the run reaches the node service.

Usage::

    python -m node.flower.warm_clientapp --runtime-api-address 127.0.0.1:9094 \
        [--insecure | --root-certificates CA] [--superexec-auth-secret-file F] [--poll 0.05] [--parent-pid PID]

The node's round token reaches the shim through this process's environment
(:data:`protocols.wire.flower_round.ROUND_TOKEN_ENV`).

What each party learns: nothing beyond what its ClientApp handles. A FAB author learns only that
the run was refused.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.config import get_fab_config
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=no-name-in-module
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
    SuperExecAuthHttpInterceptor,
)
from flwr.supercore.object_ref import load_app
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

DEFAULT_APP = "node.flower.client_app:app"
FAB_FILES = frozenset({"pyproject.toml", ".info/CONTENT"})
"""Everything a pinned FAB may carry: its manifest and Flower's content list; any other file is code or data."""
_ACQUIRE_TASK = "/flwr.proto.Runtime/AcquireTask"
LOG = logging.getLogger("tandem.flower.warm")


@dataclass(frozen=True)
class PinnedApp:
    """The Flower app whose runs this node serves: Tandem's own, naming its installed ClientApp shim.

    Attributes:
        clientapp: The one ``clientapp`` component a run's FAB may name (and the only one this runner loads).
        publisher: ``[tool.flwr.app] publisher`` of Tandem's app.
        name: ``[project] name`` of Tandem's app.
    """

    clientapp: str = DEFAULT_APP
    publisher: str = "tandem"
    name: str = "tandem-flower"


@dataclass(frozen=True)
class RuntimeEndpoint:
    """Where the SuperNode's Runtime API is and how to trust it."""

    address: str
    insecure: bool
    root_certificates: str | None
    superexec_secret: bytes | None = None

    def client(self, component: str, token: str | None = None) -> RuntimeHttpClient:
        """A Runtime API client, authenticated with a task token if given (``AcquireTask`` signed if a secret is)."""
        interceptors: list[object] = [RuntimeVersionHttpInterceptor(component_name=component)]
        if token is not None:
            interceptors.append(RuntimeTokenHttpInterceptor(token))
        if self.superexec_secret is not None:
            interceptors.append(SuperExecAuthHttpInterceptor(master_secret=self.superexec_secret,
                                                             protected_methods={_ACQUIRE_TASK}))
        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.insecure,
            root_certificates=self.root_certificates,
            interceptors=interceptors,  # type: ignore[arg-type]
            retry_invoker=make_simple_http_retry_invoker(),
        )


class FabRefusedError(RuntimeError):
    """The run's FAB is not the app this runner is pinned to."""


def check_fab(fab_content: bytes, pin: PinnedApp) -> None:
    """Refuse a FAB that is not ``pin``'s app or that carries anything but its manifest.

    Raises:
        FabRefusedError: Unreadable, another ClientApp, another publisher or name, or files besides
            ``pyproject.toml`` (e.g. a module that would shadow the installed shim).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(fab_content)) as archive:
            files = set(archive.namelist())
        config = get_fab_config(fab_content)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as err:
        raise FabRefusedError(f"this node runs only {pin.clientapp!r}; the run's FAB is unreadable ({err})") from None
    app = config.get("tool", {}).get("flwr", {}).get("app", {})
    named = app.get("components", {}).get("clientapp")
    if named != pin.clientapp:
        raise FabRefusedError(f"this node runs only {pin.clientapp!r}; the run's FAB names {named!r}")
    identity = (app.get("publisher"), config.get("project", {}).get("name"))
    if identity != (pin.publisher, pin.name):
        raise FabRefusedError(f"this node runs only {pin.publisher}/{pin.name}; the run's FAB is "
                              f"{identity[0]}/{identity[1]}")
    carried = sorted(files - FAB_FILES)
    if carried:
        raise FabRefusedError(f"this node runs only its installed {pin.clientapp!r}; the run's FAB carries "
                              f"{len(carried)} other file(s), e.g. {carried[:3]}")


def run_task(endpoint: RuntimeEndpoint, token: str, app: ClientApp, pin: PinnedApp) -> None:
    """Execute one claimed ClientApp task in this process (what ``flwr-clientapp`` does)."""
    client = endpoint.client("flwr-clientapp", token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    message: Message | None = None
    context: Context | None = None
    reply: Message | None = None
    sub_status, details = SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, _run, fab = pull_task_input(client)
        check_fab(fab.content, pin)
        reply = app(message=message, context=context)
        sub_status, details = SubStatus.COMPLETED, ""
    except Exception as err:  # noqa: BLE001 - any failure becomes an error reply, as in flwr-clientapp
        if isinstance(err, FabRefusedError):
            LOG.warning("refused run %s: %s", getattr(context, "run_id", "?"), err)
        else:
            LOG.exception("ClientApp task failed")
        details = f"{type(err).__name__}: {err}"
        if message is not None:
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
        finally:
            push_task_output(client, context, sub_status, details)
            heartbeat.stop()
            client.close()


def _watch_parent(parent_pid: int, stop: threading.Event) -> None:
    """Set ``stop`` once ``parent_pid`` (the SuperNode) is gone."""

    def watch() -> None:
        while not stop.wait(0.5):
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _exit_after_stop(stop: threading.Event, grace: float = 10.0) -> None:
    """End the process ``grace`` seconds after ``stop`` is set (SIGTERM, or the SuperNode gone), whatever runs.

    For a task still running then: Flower's runtime client retries a push to a dead SuperNode without
    end (seen: runners of killed SuperNodes left retrying for hours after SIGTERM).
    """

    def wait_then_exit() -> None:
        stop.wait()
        time.sleep(grace)
        os._exit(0)

    threading.Thread(target=wait_then_exit, name="exit-after-stop", daemon=True).start()


def serve(endpoint: RuntimeEndpoint, pin: PinnedApp, poll: float, stop: threading.Event) -> None:
    """Claim and run ClientApp tasks of ``pin``'s app until ``stop`` is set."""
    app = load_app(pin.clientapp, ValueError)
    if not isinstance(app, ClientApp):
        raise TypeError(f"{pin.clientapp} is not a ClientApp")
    client = endpoint.client("SuperExec")
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
    try:
        while not stop.is_set():
            response = client.AcquireTask(request)
            if response.HasField("task") and response.token:
                run_task(endpoint, response.token, app, pin)
                continue
            stop.wait(poll)
    finally:
        client.close()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Long-lived ClientApp runner (SuperNode --isolation process)")
    parser.add_argument("--runtime-api-address", required=True)
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--insecure", action="store_true")
    trust.add_argument("--root-certificates")
    parser.add_argument("--app", default=DEFAULT_APP, help="the only ClientApp this runner executes")
    parser.add_argument("--superexec-auth-secret-file", type=Path, default=None,
                        help="the SuperNode's SuperExec secret (signs AcquireTask)")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between empty AcquireTask calls")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per AcquireTask poll otherwise

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.parent_pid is not None:
        _watch_parent(args.parent_pid, stop)
    _exit_after_stop(stop)
    secret = args.superexec_auth_secret_file.read_bytes() if args.superexec_auth_secret_file else None
    endpoint = RuntimeEndpoint(args.runtime_api_address, args.insecure, args.root_certificates, secret)
    LOG.info("serving %s from %s", args.app, endpoint.address)
    started = time.monotonic()
    serve(endpoint, PinnedApp(clientapp=args.app), args.poll, stop)
    LOG.info("stopped after %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
