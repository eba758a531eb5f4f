"""The Spark engine computes the same feature table as DuckDB (local[2], seeded synthetic data)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from features.data import load_frames
from features.engines.spark import SparkEngine, SparkSettings, spark_unavailable_reason
from features.engines.spark_sql import to_spark_sql
from features.pipeline import build_features
from features.synthetic import SyntheticConfig, generate

REASON = spark_unavailable_reason()


def test_transpile_keeps_duckdb_arithmetic() -> None:
    pytest.importorskip("sqlglot")
    sql = to_spark_sql("SELECT round(epoch(ts) / 86400.0, 6) FROM main.t")
    assert "UNIX_MICROS" in sql and "main." not in sql and "CAST(86400.0 AS DOUBLE)" in sql


@pytest.mark.slow
@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_spark_equals_duckdb_on_every_column() -> None:
    con = load_frames(generate(SyntheticConfig(n_customers=300, seed=11)))
    as_of = datetime(2024, 7, 1)
    duck = build_features(con, as_of)
    engine = SparkEngine(SparkSettings(master="local[2]", shuffle_partitions=2))
    try:
        spark = build_features(con, as_of, engine=engine)
    finally:
        engine.close()
    assert len(duck) > 100
    assert list(spark.columns) == list(duck.columns)
    assert spark["customer_id"].tolist() == duck["customer_id"].tolist()
    for col in duck.columns:
        if duck[col].dtype.kind == "f":
            a, b = duck[col].to_numpy(float), spark[col].to_numpy(float)
            assert np.allclose(a, b, rtol=1e-9, atol=0, equal_nan=True), col
        else:
            assert duck[col].fillna("<null>").tolist() == spark[col].fillna("<null>").tolist(), col
