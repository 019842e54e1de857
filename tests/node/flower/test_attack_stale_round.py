"""Attack: a round of a retried job's earlier Flower run reaches the node after the job's next attempt started.

The coordinator retried a training job: attempt 1's run was stopped and attempt 2 runs with a run of its
own. A Setup round of attempt 1's run is still queued at the node's SuperNode (e.g. the node was killed
mid-training and its SuperNode took the message again on restart). Delivered through the real ClientApp
shim (:func:`node.flower.client_app.forward_round`) to the node's real round endpoint (the
ThreadingHTTPServer ``serve`` starts, with the node's egress ledger) in front of a real bank LR party job
registered as attempt 2, it is refused with 410 before the job sees it: attempt 2 stays unbound, then takes
its own run's Setup. Before the fix the stale Setup bound attempt 2 to attempt 1's run, and attempt 2's own
rounds were refused with 409 (the retried job hung).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from coordinator.flower.arbiters import LrJobArbiter
from node.flower.client_app import ShimError, forward_round
from node.jobs.training._party import make_party_job
from node.jobs.training.service import TrainingService, _round_server, _Running
from node.ledger import EgressLedger
from protocols.vfl.rounds import TrainingError
from protocols.wire.flower_round import (
    HEADER_JOB_ID,
    HEADER_PARTY,
    HEADER_ROUND_TOKEN,
    HEADER_RUN_ID,
    ROUND_TOKEN_ENV,
    Instruction,
    instruction_content,
)
from tests.support.training_harness import ARBITER, JOB_ID, Federation, party_data

TOKEN = "the-node-round-token-0123456789abcdef"
STALE_RUN, CURRENT_RUN = 9, 10


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TrainingService, str, EgressLedger]]:
    """The bank's training service behind its real round endpoint; yields (service, service url, ledger)."""
    monkeypatch.setenv(ROUND_TOKEN_ENV, TOKEN)  # the node hands its round token to its ClientApp runner
    monkeypatch.setattr(TaskIdentity, "_run_id", STALE_RUN)  # Flower stamps messages with the task identity
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    service = TrainingService()
    ledger = EgressLedger(tmp_path / "ledger.db")
    server = _round_server(service, "bank", 0, ledger, TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield service, f"http://127.0.0.1:{server.server_address[1]}", ledger
    finally:
        server.shutdown()
        server.server_close()
        ledger.close()


def _send(url: str, run_id: int, attempt: int | None, payload: bytes) -> bytes:
    """One round through the ClientApp shim, as the bank's SuperNode runs it for a message of run ``run_id``."""
    message = Message(content=instruction_content(Instruction(str(JOB_ID), "bank", 1, payload, attempt=attempt)),
                      dst_node_id=1, message_type="query.tandem_round")
    context = Context(run_id=run_id, node_id=1, node_config={"party": "bank", "service-url": url},
                      state=RecordDict(), run_config={"service-timeout": 60.0})
    return forward_round(message, context)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``condition`` until true (False after ``timeout`` seconds: the test then fails)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_stale_attempts_setup_is_refused_and_the_current_attempt_takes_its_own_run(
    node: tuple[TrainingService, str, EgressLedger], tmp_path: Path,
) -> None:
    # Prepare: attempt 2 of the job runs here (attempt 1's party job is gone); both runs' Setup rounds exist
    service, url, ledger = node
    attempt2 = Federation(tmp_path / "attempt2", party_data()).jobs["bank"]
    service._register(JOB_ID, _Running(attempt2, None, "telco", attempt=2))
    stale_setup = LrJobArbiter(ARBITER).start()["bank"]
    own_setup = LrJobArbiter(ARBITER).start()["bank"]

    # Execute: attempt 1's Setup arrives first, then attempt 2's own
    with pytest.raises(ShimError) as stale:
        _send(url, STALE_RUN, 1, stale_setup)
    answer = _send(url, CURRENT_RUN, 2, own_setup)

    # Assert: the stale round was refused (410) without touching attempt 2, which is bound to its own run
    assert "answered 410" in str(stale.value) and "attempt 1" in str(stale.value), stale.value
    assert b"n_train" in answer
    assert attempt2.run_id == str(CURRENT_RUN) and attempt2.rounds == 1 and attempt2.error is None
    kinds = [(r.body["kind"], r.body["ref"]) for r in ledger.records()]
    assert kinds == [("flower.round_error", f"flower/run/{STALE_RUN}/round/1"),
                     ("flower.round_reply", f"flower/run/{CURRENT_RUN}/round/1")]
    # ... and a later round of the stale run (or one naming no attempt) is refused too, the job runs on
    with pytest.raises(ShimError, match="answered 410"):
        _send(url, STALE_RUN, 1, stale_setup)
    bare = httpx.post(f"{url}/flower/v1/{CURRENT_RUN}/2", content=own_setup, timeout=30, headers={
        HEADER_JOB_ID: str(JOB_ID), HEADER_PARTY: "bank", HEADER_RUN_ID: str(CURRENT_RUN), HEADER_ROUND_TOKEN: TOKEN})
    assert bare.status_code == 400 and "X-Tandem-Attempt" in bare.text
    assert attempt2.error is None and attempt2.rounds == 1 and not attempt2.finished.is_set()


def test_a_newer_attempts_round_stops_the_stale_attempt_and_waits_for_its_own(
    node: tuple[TrainingService, str, EgressLedger], tmp_path: Path,
) -> None:
    # Prepare: attempt 1 is still registered here (its handler has not noticed the retry yet)
    service, url, _ = node
    attempt1 = Federation(tmp_path / "attempt1", party_data()).jobs["bank"]
    attempt2 = Federation(tmp_path / "attempt2", party_data()).jobs["bank"]
    service._register(JOB_ID, _Running(attempt1, None, "telco", attempt=1))

    # Execute: attempt 2's Setup arrives; the runner then replaces attempt 1 by attempt 2
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_send, url, CURRENT_RUN, 2, LrJobArbiter(ARBITER).start()["bank"])
        assert attempt1.finished.wait(60), "attempt 1 was not stopped"
        service._unregister(JOB_ID)
        service._register(JOB_ID, _Running(attempt2, None, "telco", attempt=2))
        answer = pending.result(timeout=120)

    # Assert: attempt 1 stopped without taking the round; attempt 2 took it, bound to its own run
    assert isinstance(attempt1.error, TrainingError) and "attempt 2" in str(attempt1.error)
    assert attempt1.rounds == 0 and attempt1.run_id is None
    assert b"n_train" in answer and attempt2.run_id == str(CURRENT_RUN) and attempt2.rounds == 1


def test_a_stale_setup_waiting_for_alignment_ends_when_its_attempt_stops(
    node: tuple[TrainingService, str, EgressLedger], tmp_path: Path,
) -> None:
    # Prepare: attempt 1 registered but not aligned yet (its alignment hangs on a lost peer), with a wait
    # far longer than this test: its Setup round would hold the SuperNode's ClientApp runner meanwhile
    service, url, _ = node
    spec = Federation(tmp_path / "attempt1", party_data()).jobs["bank"].spec
    attempt1 = make_party_job(dataclasses.replace(spec, wait_timeout=3600.0), active=True)
    attempt2 = Federation(tmp_path / "attempt2", party_data()).jobs["bank"]
    service._register(JOB_ID, _Running(attempt1, None, "telco", attempt=1))

    with ThreadPoolExecutor(2) as pool:
        stale = pool.submit(_send, url, STALE_RUN, 1, LrJobArbiter(ARBITER).start()["bank"])
        assert wait_until(lambda: attempt1.rounds == 1), "attempt 1's Setup did not reach the job"
        # Execute: the job is retried; attempt 2's Setup arrives (the runner then registers attempt 2)
        current = pool.submit(_send, url, CURRENT_RUN, 2, LrJobArbiter(ARBITER).start()["bank"])
        assert attempt1.finished.wait(60), "attempt 1 was not stopped"
        service._unregister(JOB_ID)
        service._register(JOB_ID, _Running(attempt2, None, "telco", attempt=2))

        # Assert: the stale Setup ended with its attempt (an error reply, not an hour's wait); attempt 2 runs
        with pytest.raises(ShimError, match="stopped before the rows were aligned"):
            stale.result(timeout=120)
        assert b"n_train" in current.result(timeout=120)
    assert attempt2.run_id == str(CURRENT_RUN) and attempt2.error is None


@pytest.mark.parametrize("job_id", ["²", "٧", "1" * 5000, "+7", "0_7", "7 8", ""])
def test_a_malformed_job_id_gets_a_400_and_an_error_record(
    node: tuple[TrainingService, str, EgressLedger], job_id: str,
) -> None:
    """Found by attack: ``'²'`` (``isdigit`` but not ``int``) and 5,000 digits crashed the handler after its
    400 (no HTTP answer, nothing in the ledger); ``'+7'`` and ``'0_7'`` were taken as job 7."""
    _, url, ledger = node
    raw = {HEADER_PARTY: "bank", HEADER_RUN_ID: str(CURRENT_RUN), HEADER_ROUND_TOKEN: TOKEN}
    headers = [(k.encode(), v.encode()) for k, v in raw.items()] + [(HEADER_JOB_ID.encode(), job_id.encode("latin-1",
                                                                                                          "replace"))]
    answer = httpx.post(f"{url}/flower/v1/{CURRENT_RUN}/1", content=b"x", timeout=30, headers=headers)

    assert answer.status_code == 400 and HEADER_JOB_ID in answer.text
    assert [(r.body["kind"], r.body["job_id"]) for r in ledger.records()] == [("flower.round_error", None)]
