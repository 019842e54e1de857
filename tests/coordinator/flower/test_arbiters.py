"""The training arbiters without Flower: setup checks, the default LR settings, refusals, what the LR arbiter sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.flower.arbiters import LrJobArbiter, SbJobArbiter, lr_job_config
from protocols.vfl import LrArbiter, LrConfig, OptimizerConfig
from protocols.vfl.rounds import (
    DEFAULT_LR_ITERATIONS,
    LrConfigWire,
    LrRound,
    LrRoundReply,
    SbRound,
    Setup,
    SetupReply,
    TrainingError,
    decode_payload,
    decode_reply,
)
from protocols.wire.errors import ConfigError
from protocols.wire.training import LrMaskedUpdate
from tests.support.training_harness import RECOMMENDED, Federation, party_data, run

DIGEST = "a" * 64


def _setup(n_train: int = 100, digest: str = DIGEST, features: int = 3) -> bytes:
    reply = SetupReply(n_train=n_train, n_test=40, n_features=features, alignment_digest=digest)
    return reply.model_dump_json().encode()


def test_lr_arbiter_sends_setup_then_first_instruction_with_key() -> None:
    # Prepare
    arbiter = LrJobArbiter({"iterations": 2, "key_bits": 256, "allow_insecure_test_key": True})

    # Execute
    first = arbiter.start()
    second = arbiter.handle({"bank": _setup(), "telco": _setup()})

    # Assert
    assert {p: decode_payload(b).kind for p, b in first.items()} == {"bank": "setup", "telco": "setup"}
    assert second is not None
    rounds = {p: decode_payload(b) for p, b in second.items()}
    assert all(isinstance(r, LrRound) and r.instruction.public_key and r.config.n_rows == 100 for r in rounds.values())


@pytest.mark.parametrize(("bank", "telco"), [
    (_setup(digest="b" * 64), _setup()),
    (_setup(n_train=99), _setup()),
    (_setup(features=0), _setup()),
    (b"{not json", _setup()),
])
def test_mismatched_or_malformed_setup_is_refused(bank: bytes, telco: bytes) -> None:
    arbiter = LrJobArbiter({"iterations": 2, "key_bits": 256, "allow_insecure_test_key": True})
    arbiter.start()
    with pytest.raises(TrainingError):
        arbiter.handle({"bank": bank, "telco": telco})


def test_lr_jobs_default_to_the_recommended_settings_all_of_them_on_the_wire() -> None:
    # Prepare
    arbiter = LrJobArbiter({"key_bits": 256, "allow_insecure_test_key": True, "iterations": None, "seed": 9})
    arbiter.start()

    # Execute
    rounds = arbiter.handle({"bank": _setup(), "telco": _setup()})

    # Assert
    assert rounds is not None
    wire = decode_payload(rounds["bank"])
    assert isinstance(wire, LrRound)
    recommended = LrConfig.recommended(100, seed=9, allow_insecure_test_key=True)
    assert wire.config == LrConfigWire.of(recommended)
    assert wire.config.to_config(allow_insecure_test_key=True) == recommended  # nothing lost on the wire
    assert wire.config.model_dump(exclude={"protocol_version"}) == {
        "n_rows": 100, "batch_size": 100, "max_epochs": DEFAULT_LR_ITERATIONS, "alpha": 1e-4, "learning_rate": 1.0,
        "optimizer": "newton", "momentum": 0.3, "decay": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
        "seed": 9, "tol": 1e-6, "gradient": "linearized", "feature_exponent": -1, "warm_start": True,
        "allow_insecure_test_key": True,
    }
    # the test-only key flag is each party's own: the wire's value is ignored
    assert not wire.config.to_config(allow_insecure_test_key=False).allow_insecure_test_key


def test_lr_job_overrides_replace_single_fields() -> None:
    config = lr_job_config(500, {"iterations": 12, "batch_size": 128, "optimizer": "adam", "learning_rate": 0.1})

    assert (config.max_epochs, config.batch_size) == (12, 128)
    assert config.optimizer == OptimizerConfig("adam", 0.1, momentum=0.3)
    assert (config.gradient, config.warm_start, config.feature_exponent) == ("linearized", True, -1)


def test_invalid_lr_settings_fail_the_job() -> None:
    arbiter = LrJobArbiter({"key_bits": 256, "allow_insecure_test_key": True, "gradient": "exact"})
    arbiter.start()
    with pytest.raises(TrainingError, match="invalid LR settings"):
        arbiter.handle({"bank": _setup(), "telco": _setup()})


def test_short_key_without_the_test_flag_is_refused() -> None:
    arbiter = LrJobArbiter({"iterations": 2, "key_bits": 512})
    arbiter.start()
    with pytest.raises(ConfigError):
        arbiter.handle({"bank": _setup(), "telco": _setup()})


def test_sb_arbiter_batches_trees_then_finishes() -> None:
    # Prepare
    arbiter = SbJobArbiter({"trees": 3, "trees_per_round": 2, "key_bits": 256, "allow_insecure_test_key": True})
    setup = decode_payload(arbiter.start()["telco"])

    # Execute
    round_2 = arbiter.handle({"bank": _setup(), "telco": _setup()})
    assert round_2 is not None and set(round_2) == {"bank"}
    first = decode_payload(round_2["bank"])
    round_3 = arbiter.handle({"bank": b'{"kind": "sb_round_reply", "trees_done": 2}'})
    assert round_3 is not None
    second = decode_payload(round_3["bank"])
    finish = arbiter.handle({"bank": b'{"kind": "sb_round_reply", "trees_done": 3}'})

    # Assert
    assert isinstance(setup, Setup) and setup.trees == 3
    assert isinstance(first, SbRound) and (first.first_tree, first.n_trees) == (0, 2)
    assert isinstance(second, SbRound) and (second.first_tree, second.n_trees) == (2, 1)
    assert finish is not None and {decode_payload(b).kind for b in finish.values()} == {"finish"}


def test_sb_arbiter_refuses_a_round_without_progress() -> None:
    arbiter = SbJobArbiter({"trees": 3})
    arbiter.start()
    arbiter.handle({"bank": _setup(), "telco": _setup()})
    with pytest.raises(TrainingError):
        arbiter.handle({"bank": b'{"kind": "sb_round_reply", "trees_done": 0}'})


def test_lr_arbiter_receives_only_masked_values_with_the_recommended_settings(tmp_path: Path) -> None:
    """Record everything the coordinator's LR arbiter receives and decrypts in a job with the default settings."""
    # Prepare
    decrypted: list[int] = []
    original = LrArbiter._decrypt

    def spy_decrypt(self: LrArbiter, data: bytes) -> bytes:
        out = original(self, data)
        width = (int(self._public_key.n).bit_length() + 7) // 8
        decrypted.extend(int.from_bytes(out[i:i + width], "big") for i in range(0, len(out), width))
        return out

    arbiter = LrJobArbiter(RECOMMENDED)
    received: list[object] = []
    handle = arbiter.handle

    def recording_handle(replies: dict[str, bytes]) -> dict[str, bytes] | None:
        received.extend(decode_reply(raw) for raw in replies.values())
        return handle(replies)

    # Execute
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LrArbiter, "_decrypt", spy_decrypt)
        mp.setattr(arbiter, "handle", recording_handle)
        sent = run(Federation(tmp_path, party_data()), arbiter)

    # Assert: the recommended settings ran; counts, masked updates and the bank's held-out metrics only
    first = sent[1]["bank"]
    assert isinstance(first, LrRound) and (first.config.optimizer, first.config.gradient) == ("newton", "linearized")
    assert {type(r).__name__ for r in received} == {"SetupReply", "LrRoundReply", "FinishReply"}
    updates = [r.update for r in received if isinstance(r, LrRoundReply)]
    assert updates and all(isinstance(u, LrMaskedUpdate) for u in updates)
    # every decrypted value is a full-size residue mod n (a plain gradient or loss mantissa is far shorter)
    n_bits = 256
    assert len(decrypted) == 6 * (4 + 2 + 1) and len(set(decrypted)) == len(decrypted)
    assert min(v.bit_length() for v in decrypted) > n_bits - 24
    assert 0.2 < sum((v >> (n_bits - 2)) & 1 for v in decrypted) / len(decrypted) < 0.8
