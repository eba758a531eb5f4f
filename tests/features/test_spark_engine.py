"""The Spark engine's SQL: DuckDB's arithmetic kept when the feature queries are transpiled.

That Spark computes the same feature table as DuckDB, every column at every training cut-off, is tested where the
training frames are built through it (``tests/training/test_train_spark.py``), a superset of the single feature
table this module once compared; Spark's start costs tens of seconds per module here.
"""

from __future__ import annotations

import pytest

from features.engines.spark_sql import to_spark_sql


def test_transpile_keeps_duckdb_arithmetic() -> None:
    pytest.importorskip("sqlglot")
    sql = to_spark_sql("SELECT round(epoch(ts) / 86400.0, 6) FROM main.t")
    assert "UNIX_MICROS" in sql and "main." not in sql and "CAST(86400.0 AS DOUBLE)" in sql
