"""Resume: a retried train_risk job starts after its last completed iteration and ends with the same model.

In-process federation (:mod:`tests.support.training_harness`): the arbiter and both party jobs, no Flower.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.flower.arbiters import LrJobArbiter
from node.jobs.training.checkpoints import LrCheckpoint, LrCheckpoints, checkpoint_dir
from protocols.vfl import LrConfig
from protocols.vfl.rounds import LrConfigWire, LrRound
from tests.support.training_harness import ARBITER, DIGEST, JOB_ID, RECOMMENDED, Federation, party_data, run


def _lr_iterations(sent: list) -> list[int]:
    return [r["bank"].instruction.iteration for r in sent if isinstance(r.get("bank"), LrRound)]


def test_retried_job_resumes_after_the_last_completed_iteration_with_the_same_model(tmp_path: Path) -> None:
    # Prepare: an uninterrupted run, and a run that crashes during iteration 3 (iterations 0..2 completed)
    data = party_data()
    reference = Federation(tmp_path / "reference", data)
    run(reference, LrJobArbiter(ARBITER))
    crashed = Federation(tmp_path / "retried", data)
    first = run(crashed, LrJobArbiter(ARBITER), crash_after=3)
    assert crashed.models("bank") == [] and crashed.models("telco") == []
    checkpoints = {p: LrCheckpoints(checkpoint_dir(tmp_path / "retried" / p, JOB_ID), JOB_ID, DIGEST, role)
                   for p, role in (("bank", "active"), ("telco", "passive"))}
    assert {p: c.latest(crashed.jobs[p].aligned.digest) for p, c in checkpoints.items()} == {"bank": 3, "telco": 3}

    # Execute: the same job id and digest run again on the same state directories
    retried = Federation(tmp_path / "retried", data)
    arbiter = LrJobArbiter(ARBITER)
    second = run(retried, arbiter)

    # Assert
    assert _lr_iterations(first) == [0, 1, 2, 3]
    assert _lr_iterations(second) == [3, 4, 5, 6]  # resumes at iteration k = 3 (the 4th); 6 is the stop
    resume_round = second[1]["bank"]
    assert isinstance(resume_round, LrRound) and resume_round.resume_from == 3
    assert resume_round.instruction.public_key and resume_round.instruction.masked_gradient is None
    assert retried.parts == reference.parts  # bit-for-bit the same weights on both sides
    assert retried.jobs["bank"].outputs["iterations"] == reference.jobs["bank"].outputs["iterations"] == 6
    assert [c.job_id for c in retried.models("bank")] == [JOB_ID]
    assert not checkpoints["bank"].directory.exists()  # removed once the model part is stored


@pytest.mark.parametrize("k", [1, 3, 5])
def test_recommended_run_interrupted_after_iteration_k_resumes_to_the_same_model(tmp_path: Path, k: int) -> None:
    """Newton with momentum, linearised gradient, warm start: the velocity and the warm start survive a retry."""
    # Prepare: an uninterrupted run, and a run that crashes once iteration k has been answered
    data = party_data()
    reference = Federation(tmp_path / "reference", data)
    sent = run(reference, LrJobArbiter(RECOMMENDED))
    crashed = Federation(tmp_path / "retried", data)
    run(crashed, LrJobArbiter(RECOMMENDED), crash_after=k)
    bank = LrCheckpoints(checkpoint_dir(tmp_path / "retried" / "bank", JOB_ID), JOB_ID, DIGEST, "active")
    checkpoint = bank.load(k)

    # Execute
    retried = Federation(tmp_path / "retried", data)
    second = run(retried, LrJobArbiter(RECOMMENDED))

    # Assert: the recommended settings on the wire, a checkpoint with the Newton velocity, the same model
    config = sent[1]["bank"].config
    n_train = retried.jobs["bank"].outputs["n_train"]
    assert config == LrConfigWire.of(LrConfig.recommended(n_train, seed=3, allow_insecure_test_key=True))
    assert (config.optimizer, config.momentum, config.gradient, config.warm_start) == ("newton", 0.3, "linearized",
                                                                                       True)
    assert isinstance(checkpoint, LrCheckpoint) and checkpoint.config == config
    assert checkpoint.optimizer_steps == k and any(checkpoint.optimizer_m)
    assert _lr_iterations(second)[0] == k and second[1]["bank"].resume_from == k
    assert retried.parts == reference.parts  # bit-for-bit the same weights on both sides
    assert retried.jobs["bank"].outputs["resumed_from"] == retried.jobs["telco"].outputs["resumed_from"] == k
    assert reference.jobs["bank"].outputs["resumed_from"] == 0
    assert retried.jobs["bank"].outputs["iterations"] == reference.jobs["bank"].outputs["iterations"]


def test_checkpoints_of_other_rows_or_another_digest_are_not_resumed(tmp_path: Path) -> None:
    # Prepare
    data = party_data()
    crashed = Federation(tmp_path, data)
    run(crashed, LrJobArbiter(ARBITER), crash_after=2)
    digest = crashed.jobs["bank"].aligned.digest

    # Execute
    same = LrCheckpoints(checkpoint_dir(tmp_path / "bank", JOB_ID), JOB_ID, DIGEST, "active")
    other_digest = LrCheckpoints(same.directory, JOB_ID, "0" * 64, "active")

    # Assert
    assert same.latest(digest) == 2
    assert same.latest("f" * 64) == 0
    assert other_digest.latest(digest) == 0
