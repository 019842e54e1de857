"""One Spark session (``local[2]``) per test module; skipped without PySpark or Java, failed instead under CI."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from node.spark import SparkConfig, spark_available, spark_session, stop_spark


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    missing = spark_available()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"Spark tests cannot run under CI: {missing}")
        pytest.skip(f"Spark tests skipped: {missing}")
    session = spark_session(SparkConfig(master="local[2]", conf={"spark.sql.shuffle.partitions": "3"}))
    yield session
    stop_spark()
