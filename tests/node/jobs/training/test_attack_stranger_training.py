"""Issue 9, attack 2 against training: one garbage frame from a registered third party fails another pair's job.

The bank's node serves its real data plane (pinned mutual TLS on loopback) with the training service's
``train.*`` handler in front of a running LR party job whose signed counterparty is the telco. A rogue
party whose certificate the bank has pinned (it is registered) sends a garbage ``train.lr`` frame for
that job. It is refused with 403 and the job is not touched — whether the node's inbox is bound to the
job's peer or, as in the second case, the training service's own check is the only one — and the job
then trains to the end (the rounds run through the in-process federation of ``training_harness``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.flower.arbiters import LrJobArbiter
from node.jobs.training.service import CHANNELS, TrainingService, _Running
from node.peer import PeerError
from tests.node.peer.conftest import Node
from tests.support.training_harness import ARBITER, JOB_ID, Federation, party_data, run


@pytest.mark.parametrize("inbox_peer", ["telco", None], ids=["inbox-bound", "inbox-unbound"])
def test_a_strangers_garbage_frame_neither_reaches_nor_fails_a_training_job(
        tmp_path: Path, make_party: Any, inbox_peer: str | None) -> None:
    # Prepare: the bank's node, running its LR party job with the telco; a rogue registered party
    fed = Federation(tmp_path / "fed", party_data())
    bank, rogue = Node(make_party("bank")), Node(make_party("rogue"))
    bank.pins.refresh([rogue.party.public(rogue.server.port)])
    rogue.pins.refresh([bank.party.public(bank.server.port)])
    service = TrainingService()
    for channel in CHANNELS:
        bank.inbox.register_handler(channel, service.on_peer)
    service._register(JOB_ID, _Running(fed.jobs["bank"], None, "telco"))
    bank.inbox.activate(JOB_ID, peer=inbox_peer)
    job = fed.jobs["bank"]

    try:
        # Execute: the rogue sends a frame the job would fail on
        with rogue.client_to(bank) as client, pytest.raises(PeerError) as refused:
            client.exchange(JOB_ID, "train.lr", 1, b"\x00garbage that is no LrForward")
        print(f"rogue's train.lr frame: HTTP {refused.value.http_status}; job error {job.error!r}")

        # Assert: refused as a stranger, the job untouched; then it trains to the end
        assert refused.value.http_status == 403 and "not the counterparty of" in str(refused.value)
        assert job.error is None and not job.finished.is_set()
        run(fed, LrJobArbiter(ARBITER))
        assert job.error is None and job.finished.is_set()
        assert [c.party for c in fed.models("bank")] == ["bank"]
    finally:
        bank.server.stop()
        rogue.server.stop()
