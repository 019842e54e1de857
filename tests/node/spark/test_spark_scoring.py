"""App-promotion scoring on Spark partitions equals ``score_standalone`` on the whole table, row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from node.spark import score_partitions
from protocols.vfl.model_parts import FeatureScaling
from protocols.vfl.standalone import StandaloneLr, StandaloneSb, _SbTree, score_standalone


def test_spark_scores_equal_the_pure_scorer(spark):
    rng = np.random.default_rng(11)
    n = 5000
    features = pd.DataFrame({"arpu": rng.gamma(2.0, 40.0, n), "tenure": rng.integers(0, 120, n).astype(float),
                             "apps": rng.poisson(3.0, n).astype(float)})
    features.loc[rng.random(n) < 0.05, "arpu"] = np.nan  # missing cells score at the training mean
    frame = pd.DataFrame({"subscriber": [f"s{i}" for i in range(n)], **features})
    part = StandaloneLr(np.array([0.01, -0.02, 0.3]), -0.4,
                        FeatureScaling(mean=[80.0, 60.0, 3.0], scale=[40.0, 35.0, 1.7]))
    expected = score_standalone(part, features.to_numpy())

    scored = score_partitions(spark.createDataFrame(frame).repartition(4), part, id_column="subscriber",
                              feature_columns=["arpu", "tenure", "apps"]).toPandas()

    got = scored.set_index("id").loc[frame["subscriber"], "score"].to_numpy()
    assert len(scored) == n
    np.testing.assert_array_equal(got, expected)
    assert 0.05 < expected.mean() < 0.95


def test_spark_secureboost_scores_equal_the_pure_scorer(spark):
    """SecureBoost (telco splits compiled to tables): the same scores on partitions, NaN and text cells included."""
    rng = np.random.default_rng(12)
    n = 4000
    features = pd.DataFrame({"arpu": rng.gamma(2.0, 40.0, n), "tenure": rng.integers(0, 120, n).astype(float)})
    features.loc[rng.random(n) < 0.05, "tenure"] = np.nan
    frame = pd.DataFrame({"subscriber": [f"s{i}" for i in range(n)],
                          "arpu": features["arpu"].map(repr), "tenure": features["tenure"]})  # arpu as text
    part = StandaloneSb(base_margin=-0.3, features=(0, 1, 0), thresholds=(60.0, 24.0, 150.0), width=2,
                        trees=(_SbTree((0,), np.array([0.4, -0.2])),
                               _SbTree((1, 2), np.array([0.1, -0.5, 0.3, 0.05]))))
    expected = score_standalone(part, features.to_numpy())

    scored = score_partitions(spark.createDataFrame(frame).repartition(3), part, id_column="subscriber",
                              feature_columns=["arpu", "tenure"]).toPandas()

    got = scored.set_index("id").loc[frame["subscriber"], "score"].to_numpy()
    assert len(scored) == n
    np.testing.assert_array_equal(got, expected)
    assert len(np.unique(expected)) >= 6  # every tree outcome occurs


def test_lr_scores_do_not_depend_on_the_batching():
    """Pure (no Spark): a row scores to the same bits alone, in small batches or in the whole table.

    A BLAS product ``x @ w`` changed the last bit of 266 of these 5,000 rows when scored one at a time.
    """
    rng = np.random.default_rng(11)
    x = np.column_stack([rng.gamma(2.0, 40.0, 5000), rng.integers(0, 120, 5000).astype(float),
                         rng.poisson(3.0, 5000).astype(float)])
    part = StandaloneLr(np.array([0.01, -0.02, 0.3]), -0.4,
                        FeatureScaling(mean=[80.0, 60.0, 3.0], scale=[40.0, 35.0, 1.7]))
    whole = score_standalone(part, x)
    for size in (1, 7, 1000):
        batched = np.concatenate([score_standalone(part, x[i:i + size]) for i in range(0, len(x), size)])
        np.testing.assert_array_equal(batched, whole)
