"""The telco's app-promotion core: install screening, streaming equals one pass, seeded arms, k and ε."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from node.jobs.marketing._screening import SUPPRESSED, ScreenSpec, installed_mask, released_sizes, screen, split_arms
from protocols.vfl.standalone import StandaloneLr
from protocols.wire.control import KeyType
from tests.support.scoring_models import id_number


def test_only_a_clear_false_counts_as_not_installed() -> None:
    values = pd.Series([False, True, 0, 1, "false", "TRUE", None, "maybe", "0", "no"])
    assert installed_mask(values).tolist() == [False, True, False, True, False, True, True, True, False, False]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id_number": [id_number(i) for i in range(n)], "a": rng.normal(size=n),
                         "b": rng.normal(size=n), "installed": rng.random(n) < 0.3,
                         "seg": rng.choice(["x", "y"], n), "peer_days30": rng.integers(0, 3, n)})


def test_screening_keeps_exactly_the_high_scores_without_the_app_and_streams() -> None:
    frame = _frame(2000, 1)
    frame.loc[5, "id_number"] = "not-an-id"
    part = StandaloneLr(np.array([1.0, -0.5]), 0.2)
    spec = ScreenSpec(0.6, ("a", "b"), "installed", "id_number", KeyType.ID_NUMBER, None, "seg", ("peer_days30",))
    whole = screen(part, [frame], spec)
    streamed = screen(part, (frame.iloc[i : i + 300] for i in range(0, 2000, 300)), spec)
    score = 1 / (1 + np.exp(-(0.2 + frame["a"] - 0.5 * frame["b"])))
    want = frame[(score >= 0.6) & ~frame["installed"]]
    invalid = int(want.index.isin([5]).sum())
    assert whole.keys == [k for k in want["id_number"] if k != "not-an-id"]
    assert whole.segments == [s for k, s in zip(want["id_number"], want["seg"], strict=True) if k != "not-an-id"]
    assert whole.uses == [(d > 0,) for k, d in zip(want["id_number"], want["peer_days30"], strict=True)
                          if k != "not-an-id"]
    assert (whole.rows, whole.over_threshold) == (2000, int((score >= 0.6).sum()))
    assert whole.installed == int(((score >= 0.6) & frame["installed"]).sum())
    assert sum(whole.invalid.values()) == invalid
    assert (streamed.keys, streamed.segments, streamed.uses) == (whole.keys, whole.segments, whole.uses)


def test_arms_are_seeded_exact_in_size_and_uniform() -> None:
    a, b, c = split_arms(1000, 0.2, 7), split_arms(1000, 0.2, 7), split_arms(1000, 0.2, 8)
    assert a.sum() == 200 and (a == b).all() and not (a == c).all()
    assert split_arms(0, 0.2, 1).size == 0 and not split_arms(10, 0.0, 1).any()
    firsts = sum(split_arms(10, 0.5, s)[0] for s in range(2000))  # each member held out half the time
    assert 900 < firsts < 1100
    with pytest.raises(ValueError, match="holdout_share"):
        split_arms(10, 1.0, 1)


def test_sizes_below_k_are_suppressed_and_noise_is_calibrated() -> None:
    rng = np.random.default_rng(0)
    counts = Counter({"a|sms|treatment": 120, "b|sms|treatment": 49, "b|sms|holdout": 50, "c|sms|holdout": 0})
    assert released_sizes(counts, 50, None, rng) == {"a|sms|treatment": 120, "b|sms|holdout": 50,
                                                     "b|sms|treatment": SUPPRESSED, "c|sms|holdout": SUPPRESSED}
    draws = np.array([released_sizes({"c": 1000}, 50, 1.0, np.random.default_rng(s))["c"] for s in range(3000)])
    # two-sided geometric with alpha = e^-1: mean 0, variance 2a/(1-a)^2 = 1.84
    assert abs(draws.mean() - 1000) < 0.1 and 1.6 < draws.var() < 2.1
    wide = np.array([released_sizes({"c": 1000}, 50, 1.0, np.random.default_rng(s), sensitivity=3)["c"]
                     for s in range(3000)])
    assert wide.var() > 3 * draws.var()  # sensitivity 3: alpha = e^-1/3, variance 17.5
    near_k = [released_sizes({"c": 50}, 50, 0.5, np.random.default_rng(s))["c"] for s in range(200)]
    assert all(v == SUPPRESSED or v >= 50 for v in near_k) and SUPPRESSED in near_k
