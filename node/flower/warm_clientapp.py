"""A long-lived ClientApp runner for a SuperNode started with ``--isolation process``.

Stock Flower 1.42 starts a fresh ``flwr-clientapp`` Python process for every message (the
SuperNode's SuperExec launches one per task); importing Flower costs seconds of CPU, which
dominates a round trip. With ``flower-supernode --isolation process`` the SuperNode starts no
SuperExec and waits for an outside process to claim its tasks over its Runtime API. This module is
that process: it claims each ClientApp task (``AcquireTask``), pulls the message, runs the
ClientApp in-process, and pushes the reply and the task's final status, with the task heartbeat
running meanwhile: the same Runtime API calls ``flwr-clientapp`` makes, minus the start-up.

It also pins the code a party runs: it only ever runs the ClientApp named by ``--app`` (by default
Tandem's shim, installed beside it) and answers with an error to any run whose FAB names another
``clientapp`` component, instead of executing code the coordinator shipped.

Usage::

    python -m node.flower.warm_clientapp --runtime-api-address 127.0.0.1:9094 \
        [--insecure | --root-certificates CA] [--poll 0.05] [--parent-pid PID]

What each party learns: nothing beyond what its ClientApp handles.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.config import get_fab_config
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=no-name-in-module
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.object_ref import load_app
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

DEFAULT_APP = "node.flower.client_app:app"
LOG = logging.getLogger("tandem.flower.warm")


@dataclass(frozen=True)
class RuntimeEndpoint:
    """Where the SuperNode's Runtime API is and how to trust it."""

    address: str
    insecure: bool
    root_certificates: str | None

    def client(self, component: str, token: str | None = None) -> RuntimeHttpClient:
        """A Runtime API client, authenticated with a task token if given."""
        interceptors: list[object] = [RuntimeVersionHttpInterceptor(component_name=component)]
        if token is not None:
            interceptors.append(RuntimeTokenHttpInterceptor(token))
        return RuntimeHttpClient.from_server_address(
            server_address=self.address,
            insecure=self.insecure,
            root_certificates=self.root_certificates,
            interceptors=interceptors,  # type: ignore[arg-type]
            retry_invoker=make_simple_http_retry_invoker(),
        )


class FabRefusedError(RuntimeError):
    """The run's FAB names a ClientApp other than the one this runner is pinned to."""


def _check_fab(fab_content: bytes, allowed: str) -> None:
    named = get_fab_config(fab_content)["tool"]["flwr"]["app"]["components"].get("clientapp")
    if named != allowed:
        raise FabRefusedError(f"this node runs only {allowed!r}; the run's FAB names {named!r}")


def run_task(endpoint: RuntimeEndpoint, token: str, app: ClientApp, app_ref: str) -> None:
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
        _check_fab(fab.content, app_ref)
        reply = app(message=message, context=context)
        sub_status, details = SubStatus.COMPLETED, ""
    except Exception as err:  # noqa: BLE001 - any failure becomes an error reply, as in flwr-clientapp
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
    def watch() -> None:
        while not stop.wait(0.5):
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                stop.set()

    threading.Thread(target=watch, daemon=True).start()


def serve(endpoint: RuntimeEndpoint, app_ref: str, poll: float, stop: threading.Event) -> None:
    """Claim and run ClientApp tasks until ``stop`` is set."""
    app = load_app(app_ref, ValueError)
    if not isinstance(app, ClientApp):
        raise TypeError(f"{app_ref} is not a ClientApp")
    client = endpoint.client("SuperExec")
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
    try:
        while not stop.is_set():
            response = client.AcquireTask(request)
            if response.HasField("task") and response.token:
                run_task(endpoint, response.token, app, app_ref)
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
    endpoint = RuntimeEndpoint(args.runtime_api_address, args.insecure, args.root_certificates)
    LOG.info("serving %s from %s", args.app, endpoint.address)
    started = time.monotonic()
    serve(endpoint, args.app, args.poll, stop)
    LOG.info("stopped after %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
