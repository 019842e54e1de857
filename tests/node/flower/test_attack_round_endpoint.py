"""Attack: another local process POSTs to the node's loopback round endpoint to fail a running training job.

The node's real round endpoint (the ThreadingHTTPServer ``serve`` starts, with the node's egress ledger)
in front of a real bank LR party job that is running. Without the round token a POST that names the
job (a malformed round would fail it) is refused with 401 before it reaches the job; the job then takes
the arbiter's real first round, sent with the token as the node's ClientApp runner sends it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coordinator.flower.arbiters import LrJobArbiter
from node.jobs.training.service import TrainingService, _round_server, _Running
from node.ledger import EgressLedger
from protocols.wire.flower_round import HEADER_JOB_ID, HEADER_PARTY, HEADER_ROUND_TOKEN, HEADER_RUN_ID
from tests.support.training_harness import ARBITER, JOB_ID, Federation, party_data

TOKEN = "the-node-round-token-0123456789abcdef"


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, Federation, EgressLedger]]:
    """The bank's round endpoint with its LR job of ``JOB_ID`` running; yields (url, federation, ledger)."""
    fed = Federation(tmp_path, party_data())
    service = TrainingService()
    service._register(JOB_ID, _Running(fed.jobs["bank"], None))
    ledger = EgressLedger(tmp_path / "ledger.db")
    server = _round_server(service, "bank", 0, ledger, TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/flower/v1/9/1", fed, ledger
    finally:
        server.shutdown()
        server.server_close()
        ledger.close()


def _headers(**extra: str) -> dict[str, str]:
    return {HEADER_JOB_ID: str(JOB_ID), HEADER_PARTY: "bank", HEADER_RUN_ID: "9", **extra}


def test_a_post_without_the_round_token_is_refused_and_the_job_runs_on(
    endpoint: tuple[str, Federation, EgressLedger],
) -> None:
    # Prepare
    url, fed, ledger = endpoint
    job = fed.jobs["bank"]

    # Execute: a local process that knows the job id but not the token sends a malformed round
    forged = [httpx.post(url, content=b"not a round", headers=_headers(), timeout=30),
              httpx.post(url, content=b"not a round", headers=_headers(**{HEADER_ROUND_TOKEN: "guess"}), timeout=30)]

    # Assert: the job neither failed nor counted a round; both refused, naming the header; nothing ledgered
    assert job.error is None and not job.finished.is_set() and job.rounds == 0, job.error
    assert [r.status_code for r in forged] == [401, 401]
    assert HEADER_ROUND_TOKEN in forged[0].text
    assert list(ledger.records()) == []
    # ... and the arbiter's real first round, with the token, is served
    first = LrJobArbiter(ARBITER).start()["bank"]
    answer = httpx.post(url, content=first, headers=_headers(**{HEADER_ROUND_TOKEN: TOKEN}), timeout=60)
    assert answer.status_code == 200, answer.text
    assert job.error is None and job.rounds == 1
    assert [r.body["kind"] for r in ledger.records()] == ["flower.round_reply"]
