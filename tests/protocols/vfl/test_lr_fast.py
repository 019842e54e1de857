"""The few-round LR settings: linearised gradient, block-diagonal Newton, warm start, worker pools."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from protocols.crypto.paillier import Decryptor, Encryptor, ParallelPaillier
from protocols.vfl import LrArbiter, LrConfig, binary_size, run_local_lr, score_local_lr
from protocols.vfl._lr import SLOPE_EXPONENT, _local_logistic_fit
from protocols.wire.training import LrMaskedUpdate, VflRole

ALPHA = 1e-3


def _fast_config(n, **kw):
    return LrConfig.recommended(n, alpha=ALPHA, allow_insecure_test_key=True, **kw)


def test_recommended_settings_match_central_logistic_regression(breast):
    xa, y, xp = breast
    config = _fast_config(len(y), max_epochs=6)
    result = run_local_lr(config, xa, y, xp, key_bits=512)

    x = np.hstack([xa, xp])
    central = LogisticRegression(C=1 / (ALPHA * len(y)), max_iter=5000).fit(x, y)
    central_auc = roc_auc_score(y, central.decision_function(x))
    auc = roc_auc_score(y, score_local_lr(result, xa, xp))
    assert result.arbiter.iterations == 6  # full batch: one iteration (one Flower round) per epoch
    assert auc >= central_auc - 0.005
    # and it uses the passive's features: better than the bank's own warm start
    bank = _local_logistic_fit(np.hstack([xa, np.ones((len(y), 1))]), y, np.append(np.full(xa.shape[1], ALPHA), 0))
    assert auc > roc_auc_score(y, np.hstack([xa, np.ones((len(y), 1))]) @ bank)


def test_linearized_run_follows_the_plain_trajectory(breast):
    """Encrypted run = the plaintext block-Newton iteration on the linearised gradient (up to fixed point)."""
    xa, y, xp = breast
    config = _fast_config(len(y), max_epochs=3, feature_exponent=-5)
    result = run_local_lr(config, xa, y, xp, key_bits=512)

    a = np.hstack([xa, np.ones((len(y), 1))])
    pen_a = np.append(np.full(xa.shape[1], ALPHA), 0.0)
    wa, wp = _local_logistic_fit(a, y, pen_a), np.zeros(xp.shape[1])
    va, vp = np.zeros_like(wa), np.zeros_like(wp)
    hp = 0.25 * xp.T @ xp / len(y) + np.diag(np.full(xp.shape[1], ALPHA) + 1e-9)
    for _ in range(3):
        ua, up = a @ wa, xp @ wp
        s = 1 / (1 + np.exp(-ua))
        slope = s * (1 - s)
        q = np.ldexp(np.rint(np.ldexp(slope, -4 * SLOPE_EXPONENT)), 4 * SLOPE_EXPONENT)
        d = s - y + q * up
        ga = a.T @ d / len(y) + pen_a * wa
        gp = xp.T @ d / len(y) + ALPHA * wp
        ha = (a.T * slope) @ a / len(y) + np.diag(pen_a + 1e-9)
        va = 0.3 * va - np.linalg.solve(ha, ga)
        vp = 0.3 * vp - np.linalg.solve(hp, gp)
        wa, wp = wa + va, wp + vp
    np.testing.assert_allclose(np.append(result.active.weights, result.active.intercept), wa, atol=1e-4)
    np.testing.assert_allclose(result.passive.weights, wp, atol=1e-4)


def test_arbiter_sees_only_masked_values_in_linearized_mode(breast):
    xa, y, xp = breast
    config = _fast_config(len(y), max_epochs=3)
    received, decrypted = [], []
    original = LrArbiter._decrypt

    def spy(self, data):
        out = original(self, data)
        width = (int(self._public_key.n).bit_length() + 7) // 8
        decrypted.extend(int.from_bytes(out[i : i + width], "big") for i in range(0, len(out), width))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LrArbiter, "_decrypt", spy)
        run_local_lr(config, xa, y, xp, key_bits=512, observer=lambda r, m: r is VflRole.ARBITER and received.append(m))
    assert received and all(isinstance(m, LrMaskedUpdate) for m in received)
    assert min(v.bit_length() for v in decrypted) > 512 - 24  # a plain gradient mantissa is < 2**80
    assert len(set(decrypted)) == len(decrypted)


def test_binary_size_counts_raw_ciphertexts(breast):
    xa, y, xp = breast
    config = _fast_config(len(y), max_epochs=2)
    forwards = []
    observer = lambda r, m: m.kind == "lr_forward" and forwards.append(len(m.encrypted_scores))  # noqa: E731
    result = run_local_lr(config, xa, y, xp, key_bits=512, observer=observer)
    traffic = result.traffic
    # iteration 0: the passive's weights are zero, so it sends no ciphertext at all
    assert forwards[0] < 100 and forwards[1] > (len(y) + 1) * 128
    assert 0 < traffic.total_binary_bytes < traffic.total_bytes * 0.8  # base64 costs a third more
    # the forward message carries n + 1 ciphertexts of 2 * 64 bytes
    assert traffic.binary_bytes[("passive_party", "active_party")] > (len(y) + 1) * 128
    assert binary_size(LrMaskedUpdate(sender=VflRole.ACTIVE_PARTY, iteration=0, masked_gradient=b"x" * 100)) > 100


def test_pool_dot_and_affine_match_in_process(small_keypair, rng):
    pk, sk = small_keypair
    enc = Encryptor(pk, allow_insecure_test_key=True)
    dec = Decryptor(sk, allow_insecure_test_key=True)
    values = rng.normal(size=40)
    vector = enc.encrypt_vector(values, exponent=-8)
    matrix = rng.normal(size=(40, 3))
    factors, offsets = rng.uniform(0, 0.25, size=40), rng.normal(size=40)
    with ParallelPaillier(enc, dec, workers=2, threshold=8) as pool:
        dot = pool.dot(vector, matrix, exponent=-3)
        affine = pool.affine(vector, factors, offsets, factor_exponent=-3)
    np.testing.assert_allclose(dec.decrypt_vector(dot), dec.decrypt_vector(vector.dot(matrix, exponent=-3)))
    q = np.rint(factors * 16**3) / 16**3
    np.testing.assert_allclose(dec.decrypt_vector(affine), values * q + offsets, atol=1e-9)
    assert affine.exponent == -11
    # fresh randomness: no output ciphertext equals the plain homomorphic result
    plain = (vector.mul(factors, exponent=-3) + offsets).ciphertexts
    assert not set(affine.ciphertexts) & set(plain)
