"""In-process client of a SuperLink's Control API (what ``flwr run / list / supernode`` call).

The ``flwr`` CLI costs seconds of start-up per command (it imports all of Flower), which made a
local federation's start-up and run polling slow. This client speaks the same protobuf-over-HTTPS
Control API with Flower's own :class:`ControlHttpClient` and request types, for the operations
Tandem needs: register a SuperNode's public key under a name, list online SuperNodes, start a run
of a local app directory with run-config overrides, read a run's status, stop a run.

It sends no Flower account credentials (account authentication is Flower Enterprise); it sends the
coordinator's Control token in ``X-Tandem-Control-Token``, which the SuperLink's gate
(:mod:`coordinator.flower.control_gate`) requires of every Control API call. A refused or failed call
raises :class:`ControlError` naming the operation and the SuperLink's answer.

What each party learns: nothing; this is coordinator-side plumbing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import tomli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.cli.build import build_fab_from_disk
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import (  # pylint: disable=no-name-in-module
    ListNodesRequest,
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
)
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.fab import Fab
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
from flwr.supercore.primitives.asymmetric import public_key_to_bytes
from flwr.supercore.protobuf.client import ProtobufCall, ProtobufRequestContext

from coordinator.flower.control_gate import HEADER as CONTROL_TOKEN_HEADER

ONLINE = "online"
_T = TypeVar("_T")


class ControlError(RuntimeError):
    """The Control API refused or did not understand a request."""


@dataclass(frozen=True)
class RunStatus:
    """A run's status: ``status`` is ``pending``/``starting``/``running``/``finished``."""

    run_id: int
    status: str
    sub_status: str
    details: str

    @property
    def finished(self) -> bool:
        """Whether the run reached a final state."""
        return self.status == "finished"

    @property
    def succeeded(self) -> bool:
        """Whether the run finished and completed."""
        return self.finished and self.sub_status == "completed"


def load_node_public_key(path: Path) -> bytes:
    """Read a SuperNode's OpenSSH EC public key file into the bytes the Control API expects.

    Raises:
        ControlError: The file does not hold an EC public key.
    """
    key = serialization.load_ssh_public_key(path.read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ControlError(f"{path} does not hold an EC public key")
    return public_key_to_bytes(key)


def app_config_keys(app_dir: Path) -> set[str]:
    """The run-config keys the app in ``app_dir`` declares (``[tool.flwr.app.config]``)."""
    config = tomli.loads((app_dir / "pyproject.toml").read_text())
    return set(config.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {}))


class _ControlToken:
    """Adds the coordinator's Control token to every request."""

    def __init__(self, token: str) -> None:
        self._token = token

    def intercept(self, context: ProtobufRequestContext, call_next: ProtobufCall) -> httpx.Response:
        context.request.headers[CONTROL_TOKEN_HEADER] = self._token
        return call_next(context)


class ControlClient:
    """A Control API client bound to one SuperLink.

    Args:
        address: ``host:port`` of the SuperLink (connected lazily).
        root_certificates: CA of the SuperLink's certificate.
        token: The coordinator's Control token; None sends none (the gate refuses every call).
    """

    def __init__(self, address: str, root_certificates: Path, token: str | None) -> None:
        interceptors: list[Any] = [RuntimeVersionHttpInterceptor(component_name="flwr CLI")]
        if token is not None:
            interceptors.append(_ControlToken(token))
        self._client = ControlHttpClient.from_server_address(
            server_address=address, insecure=False, root_certificates=str(root_certificates),
            interceptors=interceptors,
        )

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except httpx.HTTPStatusError as err:
            raise ControlError(f"{what}: the SuperLink answered {err.response.status_code}: "
                               f"{err.response.text[:300]}") from None
        except httpx.HTTPError as err:
            raise ControlError(f"{what}: the SuperLink did not answer ({type(err).__name__})") from None

    def register_node(self, public_key: bytes, name: str) -> int:
        """Register a SuperNode's public key (Flower's serialised form) under ``name``; return its id.

        Raises:
            ControlError: A SuperNode is already registered under ``name`` (a second one would let the
                ServerApp pick either), or the SuperLink refused.
        """
        holders = self.node_names().get(name)
        if holders:
            raise ControlError(f"a SuperNode is already registered as {name!r} (node {holders[0]}); "
                               "party names must be unique: unregister it first")
        response = self._call(f"register SuperNode {name!r}",
                              lambda: self._client.RegisterNode(RegisterNodeRequest(public_key=public_key, name=name)))
        if not response.node_id:
            raise ControlError(f"the SuperLink did not register SuperNode {name!r}")
        return int(response.node_id)

    def _nodes(self) -> Any:
        return self._call("list SuperNodes", lambda: self._client.ListNodes(ListNodesRequest())).nodes_info

    def node_statuses(self) -> dict[int, str]:
        """Every SuperNode the SuperLink knows, with its status (``registered``, ``online``, ...)."""
        return {int(info.node_id): str(info.status) for info in self._nodes()}

    def node_names(self) -> dict[str, list[int]]:
        """Node ids per registered name."""
        names: dict[str, list[int]] = {}
        for info in self._nodes():
            names.setdefault(str(info.name), []).append(int(info.node_id))
        return names

    def start_run(self, app_dir: Path, overrides: Mapping[str, Any]) -> int:
        """Build the FAB of ``app_dir`` and start a run with run-config ``overrides``; return its id.

        Raises:
            ControlError: An override names a key the app does not declare, or no run was started.
        """
        unknown = sorted(set(overrides) - app_config_keys(app_dir))
        if unknown:
            raise ControlError(f"run config keys {unknown} are not declared in {app_dir / 'pyproject.toml'}")
        fab_bytes = build_fab_from_disk(app_dir)
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        request = StartRunRequest(
            fab=fab_to_proto(fab),
            override_config=user_config_to_proto(dict(overrides)),
            federation="",
            app_spec="",
        )
        response = self._call("start a run", lambda: self._client.StartRun(request))
        if not response.HasField("run_id"):
            raise ControlError(f"the SuperLink did not start a run: {getattr(response, 'note', '')}")
        return int(response.run_id)

    def run_status(self, run_id: int) -> RunStatus:
        """The run's current status."""
        response = self._call(f"read run {run_id}", lambda: self._client.ListRuns(ListRunsRequest(run_id=run_id)))
        if run_id not in response.run_dict:
            raise ControlError(f"the SuperLink does not know run {run_id}")
        status = response.run_dict[run_id].status
        return RunStatus(run_id, status.status, status.sub_status, status.details)

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run."""
        self._call(f"stop run {run_id}", lambda: self._client.StopRun(StopRunRequest(run_id=run_id)))
