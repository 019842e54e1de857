"""Bad input during LR training: the job fails with a clear reason and no model part is stored.

In-process federation (:mod:`tests.support.training_harness`): the coordinator's arbiter and both party jobs,
no Flower. The node-side wait (:meth:`TrainingService._await`) is driven with a stand-in job context.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import phe
import pytest

from coordinator.flower.arbiters import LrJobArbiter
from node.jobs.training import TrainingNodeSettings, TrainingService
from node.runner import JobContext, JobEndedElsewhere
from protocols.crypto.paillier import Encryptor
from protocols.crypto.paillier.codec import encode_vector
from protocols.vfl.rounds import Finish, LrRound, LrRoundReply, SetupReply, TrainingError, decode_payload
from protocols.wire.control import JobKind, JobStatus
from protocols.wire.errors import ConfigError, ProtocolError
from protocols.wire.training import LrForward, LrMaskedUpdate, VflRole
from tests.support.training_harness import ARBITER, JOB_ID, Federation, party_data, run


def _context(status: JobStatus = JobStatus.RUNNING, detail: str = "") -> Any:
    """The parts of a JobContext that ``TrainingService._await`` uses."""
    remote = SimpleNamespace(status=status, status_detail=detail, attempt=1)
    job = SimpleNamespace(id=JOB_ID, kind=JobKind.TRAIN_RISK, params=SimpleNamespace(iterations=3), attempt=1)
    ctx = SimpleNamespace(job=job, progress=lambda stage, fraction: None,
                          coordinator=SimpleNamespace(job=lambda job_id: remote))
    ctx.check_current = lambda: JobContext.check_current(ctx)
    return ctx


def _await(job: Any, ctx: Any) -> None:
    TrainingService()._await(ctx, job, TrainingNodeSettings(idle_timeout=600.0))


def _no_models(fed: Federation) -> bool:
    return fed.models("bank") == [] and fed.models("telco") == []


def test_bank_vanishing_mid_training_fails_the_telco_job_naming_the_exchange(tmp_path: Path) -> None:
    # Prepare: the bank's node stops answering the data plane at iteration 2
    fed = Federation(tmp_path, party_data())

    # Execute
    with pytest.raises(TrainingError):
        run(fed, LrJobArbiter(ARBITER), vanish=("bank", 2))
        fed.pending["telco"].result(timeout=120)
    with pytest.raises(TrainingError) as raised:
        _await(fed.jobs["telco"], _context())

    # Assert
    assert "data-plane exchange train.lr/3 failed" in str(raised.value)
    assert "connection refused" in str(raised.value)
    assert _no_models(fed)


def test_telco_vanishing_mid_training_fails_the_bank_job_when_the_coordinator_does(tmp_path: Path) -> None:
    # Prepare: the telco's node is gone at iteration 2; the bank's round waits for its scores
    fed = Federation(tmp_path, party_data())
    run(fed, LrJobArbiter(ARBITER), vanish=("telco", 2))
    ctx = _context(JobStatus.FAILED, "telco: node lost (no reply from its SuperNode)")

    # Execute: the bank node's wait sees the job failed at the coordinator; its handler fails the job
    with pytest.raises(JobEndedElsewhere) as raised:
        _await(fed.jobs["bank"], ctx)
    fed.jobs["bank"].fail(raised.value)

    # Assert
    assert "the job was failed elsewhere: telco: node lost" in str(raised.value)
    with pytest.raises(TrainingError, match="training stopped: the job was failed elsewhere"):
        fed.pending["bank"].result(timeout=60)
    assert _no_models(fed)


def _corrupt(body: bytes, position: int, value: bytes) -> bytes:
    """Overwrite the ciphertext bytes at the end of an encoded vector."""
    return body[:position] + value + body[position + len(value):]


def test_out_of_range_ciphertext_from_the_telco_fails_the_job_with_a_clear_reason(tmp_path: Path) -> None:
    # Prepare: the telco's encrypted scores of iteration 1 end with a ciphertext >= n**2 (64-byte ciphertexts).
    # (A ciphertext replaced by another *valid* one is not detectable in general: Paillier is malleable, and
    # the data plane's mutual TLS, not the cipher, keeps third parties from doing that.)
    position, value, reason = -64, b"\xff" * 64, "refused the telco's encrypted scores of iteration 1"
    fed = Federation(tmp_path, party_data())

    def tamper(channel: str, body: bytes) -> bytes:
        if channel != "train.lr":
            return body
        forward = LrForward.model_validate_json(body)
        if forward.iteration != 1:
            return body
        scores = forward.encrypted_scores
        bad = _corrupt(scores, len(scores) + position, value)
        return forward.model_copy(update={"encrypted_scores": bad}).model_dump_json().encode()

    fed.links["telco"].tamper = tamper

    # Execute
    with pytest.raises(TrainingError):
        run(fed, LrJobArbiter(ARBITER))
    reasons = []
    for party in ("bank", "telco"):
        with pytest.raises(TrainingError) as raised:
            _await(fed.jobs[party], _context())
        reasons.append(str(raised.value))

    # Assert
    assert any(r.startswith(reason) for r in reasons), reasons
    assert _no_models(fed)


@pytest.mark.parametrize("value", [b"\x00" * 64, b"\xff" * 64], ids=["not-a-unit", "out-of-range"])
def test_arbiter_refuses_a_masked_update_that_does_not_decrypt_naming_the_party(value: bytes) -> None:
    # Prepare: a real first round, then the telco's masked update with its last ciphertext replaced
    arbiter = LrJobArbiter({**ARBITER, "batch_size": 10})
    arbiter.start()
    setup = SetupReply(n_train=10, n_test=4, n_features=2, alignment_digest="a" * 64).model_dump_json().encode()
    first = arbiter.handle({"bank": setup, "telco": setup})
    assert first is not None
    key = decode_payload(first["telco"])
    assert isinstance(key, LrRound) and key.instruction.public_key is not None
    pk = phe.PaillierPublicKey(int.from_bytes(key.instruction.public_key, "big"))
    good = encode_vector(Encryptor(pk, allow_insecure_test_key=True).encrypt_vector([0.5, -1.0, 2.0], exponent=-8))
    bad = _corrupt(good, len(good) - len(value), value)  # the last ciphertext: 0, or all ones (>= n**2)

    def reply(role: VflRole, body: bytes, loss: bytes | None) -> bytes:
        update = LrMaskedUpdate(sender=role, iteration=0, masked_gradient=body, masked_loss=loss)
        return LrRoundReply(update=update).model_dump_json().encode()

    # Execute
    with pytest.raises(TrainingError) as raised:
        arbiter.handle({"bank": reply(VflRole.ACTIVE_PARTY, good, good),
                        "telco": reply(VflRole.PASSIVE_PARTY, bad, None)})

    # Assert
    assert str(raised.value).startswith("telco's masked update of iteration 0 holds ciphertexts that do not decrypt")


def test_party_refuses_a_short_key_even_when_the_arbiter_allows_it(tmp_path: Path) -> None:
    # Prepare: the arbiter runs with the test-only flag (512-bit key); the telco node does not allow it
    fed = Federation(tmp_path, party_data(), allow_insecure_test_key={"bank": True, "telco": False})

    # Execute
    with pytest.raises((ConfigError, TrainingError)):
        run(fed, LrJobArbiter({**ARBITER, "key_bits": 512}))
    with pytest.raises(ConfigError) as raised:
        _await(fed.jobs["telco"], _context())

    # Assert
    assert "2048" in str(raised.value)
    assert _no_models(fed)


def test_a_round_of_another_flower_run_is_refused_without_failing_the_job(tmp_path: Path) -> None:
    """A stale message of an earlier attempt's run must not reach the current attempt's party job."""
    # Prepare: the bank's job took its setup round from run 12
    fed = Federation(tmp_path, party_data())
    arbiter = LrJobArbiter(ARBITER)
    setup = arbiter.start()
    job = fed.jobs["bank"]
    early = fed.jobs["telco"]

    # Execute
    with pytest.raises(ProtocolError) as before_setup:
        early.on_round(Finish().model_dump_json().encode(), "11")  # no setup yet: only a setup binds
    job.on_round(setup["bank"], "12")
    with pytest.raises(ProtocolError) as stale:
        job.on_round(setup["bank"], "11")

    # Assert
    assert stale.value.status_hint == 409 and "runs here as run 12" in str(stale.value)
    assert before_setup.value.status_hint == 409
    assert job.error is None and early.error is None and job.run_id == "12" and early.run_id is None


def test_a_party_job_stops_when_the_coordinator_retried_the_job_meanwhile(tmp_path: Path) -> None:
    fed = Federation(tmp_path, party_data())
    ctx = _context()
    ctx.coordinator = SimpleNamespace(job=lambda job_id: SimpleNamespace(status=JobStatus.APPROVED, attempt=2,
                                                                         status_detail=""))

    with pytest.raises(JobEndedElsewhere, match="retried meanwhile"):
        _await(fed.jobs["bank"], ctx)
