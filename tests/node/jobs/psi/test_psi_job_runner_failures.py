"""Failures between two real nodes: the job fails on both sides with the stage named, and nothing is kept."""

from __future__ import annotations

import pytest

from demo.synthetic import generate
from node.jobs.psi import Patience, PsiSender
from node.jobs.psi._link import session_channel
from node.jobs.psi._node import link_to_peer
from protocols.wire.control import JobInput, JobKind, JobParams, KeyType, Purpose
from protocols.wire.psi import decode_frame, encode_frame
from psi.cardinality import CardinalityReceiver
from tests.support.world import psi_world

CHANNEL = session_channel(KeyType.ID_NUMBER)


def _vanishing_bank(ctx):
    """Says hello, then crashes without telling the telco (a peer gone mid-stream)."""
    link = link_to_peer(ctx, ready_timeout=30)
    session = CardinalityReceiver(["110101198001010010"], key_type=KeyType.ID_NUMBER, job_id=str(ctx.job.id))
    link.call(CHANNEL, encode_frame(session.start()))
    raise RuntimeError("bank process died")


@pytest.fixture
def world(tmp_path):
    paths = generate(tmp_path / "data", n=300, seed=5, progress=False)
    data = {"bank_customers": paths.bank_customers, "bank_lost_contacts": paths.bank_lost_contacts,
            "telco_subscribers": paths.telco_subscribers}
    telco = PsiSender(patience=Patience(start=30, idle=1.0)).handlers()
    w = psi_world(tmp_path, data, handlers={"bank": {}, "telco": telco})
    yield w
    w.close()


def _submit(world, job_id):
    ds = world.dataset_ids
    world.submit(job_id, JobKind.AUDIENCE_OVERLAP, Purpose.APP_PROMOTION,
                 [JobInput(dataset_id=ds["bank_customers"], key_fields=["id_number"]),
                  JobInput(dataset_id=ds["telco_subscribers"], key_fields=["id_number"])],
                 JobParams(output_mode="count"))


def _nothing_kept(world, job_id):
    for node in world.nodes.values():
        jobs = node.runtime.settings.state_path / "jobs"
        assert not (jobs / str(job_id)).exists() and not (jobs / f"{job_id}.partial").exists()


def test_peer_gone_mid_stream_fails_both_sides_and_keeps_nothing(world):
    world.handlers["bank"] = {JobKind.AUDIENCE_OVERLAP: _vanishing_bank}
    _submit(world, 1)
    world.run()
    reports = world.coordinator.results[1]
    assert reports["bank"].status == "failed" and "RuntimeError" in reports["bank"].detail
    assert reports["telco"].status == "failed"
    assert "psi.id_number AWAIT_QUERY" in reports["telco"].detail and "peer gone mid-stream" in reports["telco"].detail
    _nothing_kept(world, 1)


def test_replayed_chunk_over_the_data_plane_fails_both_sides(world):
    def replaying_bank(ctx):
        ctx.progress("audience_overlap: replaying", 0.1)
        link = link_to_peer(ctx, ready_timeout=30)
        session = CardinalityReceiver(["110101198001010010"], key_type=KeyType.ID_NUMBER, job_id=str(ctx.job.id))
        query = session.handle(decode_frame(link.call(CHANNEL, encode_frame(session.start()))))
        link.call(CHANNEL, encode_frame(query))
        link.call(CHANNEL, encode_frame(query))  # a replay: new message number, same chunk
        return {}

    world.handlers["bank"] = {JobKind.AUDIENCE_OVERLAP: replaying_bank}
    _submit(world, 2)
    world.run()
    reports = world.coordinator.results[2]
    assert reports["telco"].status == "failed" and "unexpected psi.chunk:query" in reports["telco"].detail
    assert "AWAIT_EVALUATED_PULL" in reports["telco"].detail
    assert reports["bank"].status == "failed" and "HTTP 400" in reports["bank"].detail
    assert "failed at stage 'audience_overlap: replaying'" in reports["bank"].detail
    _nothing_kept(world, 2)
