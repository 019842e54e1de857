"""Attack: an outsider who holds only the SuperLink's public CA certificate uses its Control and Runtime APIs.

A real SuperLink as the coordinator starts it (:class:`SuperLinkService`: TLS, SuperNode authentication,
the Control gate), listening on every address as a deployment that serves remote nodes would. The
outsider tries what issue 9 describes (register a SuperNode as ``bank``, start a run of a FAB of its
own) and claims a ServerApp task over the Runtime API from a non-loopback address; the coordinator's
own client keeps working, and refuses to register a party name twice.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=no-name-in-module
from flwr.supercore.runtime_version_compatibility import RuntimeVersionMetadata

from coordinator.flower.certs import generate_supernode_key, generate_tls
from coordinator.flower.control_api import ControlClient, ControlError, load_node_public_key
from coordinator.flower.superlink import APP_DIR, SuperLinkService
from protocols.flower_processes import free_port

pytestmark = pytest.mark.flower


@pytest.fixture
def superlink(tmp_path: Path) -> Iterator[SuperLinkService]:
    service = SuperLinkService(tmp_path / "coordinator", free_port(), generate_tls(tmp_path / "tls"), host="0.0.0.0")  # noqa: S104
    try:
        service.start()
        yield service
    finally:
        service.stop()


def _non_loopback_address() -> str:
    """An address of this host that is not loopback (what a remote caller's connection looks like)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent; this only picks the outgoing interface
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this host has no non-loopback IPv4 address")
    return address


def _acquire_task(url: str) -> httpx.Response:
    """A well-formed AcquireTask call, as a SuperExec makes it."""
    headers = {"content-type": "application/protobuf", "accept": "application/protobuf",
               **dict(RuntimeVersionMetadata.from_local_component("SuperExec").as_metadata())}
    body = AcquireTaskRequest(supported_task_types=["serverapp"]).SerializeToString()
    return httpx.post(f"{url}/v1/runtime/acquire-task", content=body, headers=headers, verify=False, timeout=10)


def test_an_outsider_cannot_register_a_node_start_a_run_or_claim_a_task(
    tmp_path: Path, superlink: SuperLinkService
) -> None:
    # Prepare: the outsider has the CA certificate and its own SuperNode key, not the Control token
    rogue_key = load_node_public_key(generate_supernode_key(tmp_path / "rogue", "rogue").public_key)
    outsider = ControlClient(superlink.address, superlink.tls_files.ca_cert, token=None)

    # Execute + Assert: every Control call is refused, naming the header
    with pytest.raises(ControlError, match="403.*X-Tandem-Control-Token"):
        outsider.register_node(rogue_key, "bank")
    with pytest.raises(ControlError, match="403"):
        outsider.start_run(APP_DIR, {"job-id": "rogue"})
    with pytest.raises(ControlError, match="403"):
        outsider.node_statuses()
    outsider.close()
    # ... nothing was registered or started
    assert superlink.control.node_names() == {}
    # ... the Runtime API answers only this host's own processes
    remote = _acquire_task(f"https://{_non_loopback_address()}:{superlink.port}")
    assert remote.status_code == 403, remote.text
    assert _acquire_task(f"https://127.0.0.1:{superlink.port}").status_code == 200


def test_a_party_name_is_registered_once(tmp_path: Path, superlink: SuperLinkService) -> None:
    # Prepare: the bank's SuperNode key is registered
    bank = generate_supernode_key(tmp_path / "bank", "bank")
    other = generate_supernode_key(tmp_path / "other", "bank")
    node_id = superlink.register("bank", bank.public_key)

    # Execute: a second key under the same party name
    with pytest.raises(ControlError, match="already registered as 'bank'"):
        superlink.register("bank", other.public_key)

    # Assert: one SuperNode holds the name, the first
    assert superlink.control.node_names() == {"bank": [node_id]}
    assert superlink.node_ids == {"bank": node_id}
