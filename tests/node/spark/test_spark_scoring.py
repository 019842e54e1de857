"""App-promotion scoring on Spark partitions equals ``score_standalone`` on the whole table, row for row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from node.spark import score_partitions
from protocols.vfl.model_parts import FeatureScaling
from protocols.vfl.standalone import StandaloneLr, score_standalone


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
