import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from protocols.crypto.paillier import Encryptor
from protocols.crypto.paillier.codec import encode_vector
from protocols.vfl import (
    LrActiveParty,
    LrArbiter,
    LrConfig,
    LrPartyStage,
    LrPassiveParty,
    OptimizerConfig,
    run_local_lr,
    score_local_lr,
)
from protocols.vfl._crypto import public_key_to_bytes
from protocols.wire.errors import LocalProtocolError, RemoteProtocolError
from protocols.wire.training import LrForward, LrInstruction, LrMaskedUpdate, LrResidual, VflRole

ALPHA = 0.01


def _config(n, **kw):
    base = dict(n_rows=n, batch_size=128, max_epochs=15, alpha=ALPHA, optimizer=OptimizerConfig("adam", 0.05))
    base.update(kw)
    return LrConfig(allow_insecure_test_key=True, **base)


def test_federated_lr_matches_central_sklearn(breast):
    xa, y, xp = breast
    config = _config(len(y), batch_size=300, max_epochs=6)

    result = run_local_lr(config, xa, y, xp, key_bits=512)

    auc = roc_auc_score(y, score_local_lr(result, xa, xp))
    central = LogisticRegression(C=1 / (ALPHA * len(y)), max_iter=2000).fit(np.hstack([xa, xp]), y)
    central_auc = roc_auc_score(y, central.predict_proba(np.hstack([xa, xp]))[:, 1])
    assert auc >= central_auc - 0.01
    assert result.arbiter.iterations == len(result.active.loss_history) * config.batches_per_epoch or (
        result.arbiter.stopped_early
    )


def test_federated_lr_equals_plain_taylor_sgd(breast):
    """Same batches, same optimiser: the encrypted run follows the plaintext Taylor-SGD trajectory."""
    xa, y, xp = breast
    config = _config(len(y), max_epochs=2, optimizer=OptimizerConfig("sgd", 0.1))
    result = run_local_lr(config, xa, y, xp, key_bits=512)

    x = np.hstack([xa, np.ones((len(y), 1)), xp])
    w = np.zeros(x.shape[1])
    pen = np.ones(x.shape[1])
    pen[xa.shape[1]] = 0.0
    losses, total = [], 0.0
    for t in range(config.max_iterations):
        rows = config.batch_rows(t)
        u = x[rows] @ w
        ys = 2 * y[rows] - 1
        total += float(np.sum(math.log(2) - 0.5 * ys * u + 0.125 * u * u))
        if (t + 1) % config.batches_per_epoch == 0:
            losses.append(total / len(y))
            total = 0.0
        w = w - 0.1 * (x[rows].T @ (0.25 * u - 0.5 * ys) / len(rows) + ALPHA * pen * w)

    federated = np.concatenate([result.active.weights, [result.active.intercept], result.passive.weights])
    np.testing.assert_allclose(federated, w, atol=1e-6)
    np.testing.assert_allclose(result.active.loss_history, losses, atol=1e-6)


def test_arbiter_only_sees_uniform_masked_values(breast):
    """Record everything the arbiter receives and decrypts: no plain gradient or loss is in it."""
    xa, y, xp = breast
    config = _config(len(y), max_epochs=2, batch_size=256)
    received, decrypted, true_grads, moduli = [], [], [], []

    original = LrArbiter._decrypt

    def spy_decrypt(self, data):
        out = original(self, data)
        n = int(self._public_key.n)
        moduli.append(n)
        width = (n.bit_length() + 7) // 8
        decrypted.extend(int.from_bytes(out[i : i + width], "big") for i in range(0, len(out), width))
        return out

    original_apply = LrPassiveParty._apply_gradient

    def spy_apply(self, g):
        true_grads.append(g.copy())
        return original_apply(self, g)

    def observer(receiver, msg):
        if receiver is VflRole.ARBITER:
            received.append(msg)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LrArbiter, "_decrypt", spy_decrypt)
        mp.setattr(LrPassiveParty, "_apply_gradient", spy_apply)
        result = run_local_lr(config, xa, y, xp, key_bits=512, observer=observer)

    # the arbiter receives only masked updates, never residuals, scores or forward messages
    assert received and all(isinstance(m, LrMaskedUpdate) for m in received)
    n_bits = 512
    # masked plaintexts are full-size residues mod n (a plain gradient mantissa is < 2**80)
    assert min(v.bit_length() for v in decrypted) > n_bits - 24
    assert np.mean([v.bit_length() for v in decrypted]) > n_bits - 3
    # spread over [0, n) as uniform residues are: a small signed value sits near 0 (positive) or near n
    # (negative), never in the middle half. (The share of a fixed bit set depends on n itself, from 1/3 to
    # 1/2, so counting one bit failed now and then.) For 32 uniform values each share below is outside
    # (0.15, 0.85) with probability about 1e-4.
    (n,) = set(moduli)
    lower_half = np.mean([v < n // 2 for v in decrypted])
    middle_half = np.mean([n // 4 <= v < 3 * n // 4 for v in decrypted])
    assert 0.15 < lower_half < 0.85 and 0.15 < middle_half < 0.85, (lower_half, middle_half)
    # offsets to the true passive gradients are not a constant (fresh masks each iteration)
    assert len(true_grads) == result.arbiter.iterations
    assert len(set(decrypted)) == len(decrypted)


def _started_parties(breast, small_keypair):
    xa, y, xp = breast
    config = _config(len(y))
    pk, sk = small_keypair
    return config, LrActiveParty(config, xa, y), LrPassiveParty(config, xp), LrArbiter(config, sk), pk


def test_out_of_stage_messages_raise_before_work(breast, small_keypair):
    config, active, passive, arbiter, pk = _started_parties(breast, small_keypair)
    residual = LrResidual(iteration=0, encrypted_residual=b"x")
    update = LrMaskedUpdate(sender=VflRole.PASSIVE_PARTY, iteration=0, masked_gradient=b"x")
    with pytest.raises(RemoteProtocolError):
        passive.handle(residual)  # before its instruction
    with pytest.raises(RemoteProtocolError):
        active.handle(residual)  # never for the active party
    with pytest.raises(RemoteProtocolError):
        arbiter.handle(update)  # before start()
    arbiter.start()
    with pytest.raises(LocalProtocolError):
        arbiter.start()
    with pytest.raises(RemoteProtocolError):
        arbiter.handle(LrForward(iteration=0, encrypted_scores=b"x"))
    assert passive.stage is LrPartyStage.AWAIT_INSTRUCTION
    with pytest.raises(LocalProtocolError):
        passive.result()


@pytest.mark.parametrize("kind", ["lr_instruction", "lr_forward", "lr_residual", "lr_masked_update"])
def test_every_stage_kind_pair_outside_the_table_raises(breast, small_keypair, kind):
    config, active, passive, arbiter, pk = _started_parties(breast, small_keypair)
    messages = {
        "lr_instruction": LrInstruction(receiver=VflRole.PASSIVE_PARTY, iteration=0, public_key=b"\x01"),
        "lr_forward": LrForward(iteration=0, encrypted_scores=b""),
        "lr_residual": LrResidual(iteration=0, encrypted_residual=b""),
        "lr_masked_update": LrMaskedUpdate(sender=VflRole.ACTIVE_PARTY, iteration=0, masked_gradient=b""),
    }
    for party in (active, passive):
        for stage in LrPartyStage:
            if (stage, kind) in party._TRANSITIONS:
                continue
            party.stage = stage
            with pytest.raises(RemoteProtocolError):
                party.handle(messages[kind])


def test_bad_ciphertexts_are_rejected(breast, small_keypair):
    xa, y, xp = breast
    config, active, passive, arbiter, pk = _started_parties(breast, small_keypair)
    key = public_key_to_bytes(pk)
    forward = passive.handle(LrInstruction(receiver=VflRole.PASSIVE_PARTY, iteration=0, public_key=key))[0]
    assert active.handle(LrInstruction(receiver=VflRole.ACTIVE_PARTY, iteration=0, public_key=key)) == []

    with pytest.raises(RemoteProtocolError):  # garbage bytes
        active.handle(LrForward(iteration=0, encrypted_scores=b"not a vector"))
    active._forward = None
    n = int(pk.n)
    for bad in (n * n + 1, n):  # out of range; not a unit mod n**2
        data = bytearray(forward.encrypted_scores)
        data[-128:] = bad.to_bytes(128, "big")
        with pytest.raises(RemoteProtocolError):
            active.handle(LrForward(iteration=0, encrypted_scores=bytes(data)))
    short = Encryptor(pk, allow_insecure_test_key=True).encrypt_vector(np.zeros(3), exponent=-8)
    with pytest.raises(RemoteProtocolError):  # wrong length
        active.handle(LrForward(iteration=0, encrypted_scores=encode_vector(short)))
    # the rejected messages changed nothing: the genuine forward still completes the round
    out = active.handle(forward)
    assert [m.kind for m in out] == ["lr_residual", "lr_masked_update"]


def test_short_key_refused_without_test_flag(breast):
    xa, y, xp = breast
    config = LrConfig(n_rows=len(y))
    passive = LrPassiveParty(config, xp)
    with pytest.raises(Exception, match="refused"):
        passive.handle(
            LrInstruction(receiver=VflRole.PASSIVE_PARTY, iteration=0, public_key=(2**511 + 1).to_bytes(64, "big"))
        )
