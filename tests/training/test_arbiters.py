"""The training arbiters without Flower: setup checks and refusals (bad input fails with a clear reason)."""

from __future__ import annotations

import pytest

from protocols.errors import ConfigError
from protocols.training import LrJobArbiter, SbJobArbiter, TrainingError
from protocols.training._wire import LrRound, SbRound, Setup, SetupReply, decode_payload

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
