"""The Spark engine: the same feature SQL, transpiled to Spark SQL, run by PySpark (local or on a cluster).

Loading: the tables are validated and loaded by :mod:`features.data` in DuckDB exactly as for the default
engine (the checks and error messages are defined once). The engine then writes each loaded table to a Parquet
file under a staging directory and registers it as a Spark temporary view of the same name; the query runs in
Spark and only the per-customer result comes back to the driver. On a cluster the staging directory must be
one every executor can read (``CXPREDICT_SPARK_STAGING`` on a shared file system), and the validation still
runs on the driver's machine: DuckDB streams the files, so that step is bounded by one machine's disk and
cores, not its memory (see docs/benchmarks.md for what that costs at 10M rows).

Settings come from the environment, read when the engine opens:

* ``CXPREDICT_SPARK_MASTER``: the Spark master (``local[4]``, ``spark://host:7077``, ``yarn``, ``k8s://...``).
  Unset: the master ``spark-submit`` was given, else PySpark's default ``local[*]``.
* ``CXPREDICT_SPARK_STAGING``: where the validated tables are staged as Parquet (default: a temporary
  directory, removed on close).
* ``CXPREDICT_SPARK_SHUFFLE_PARTITIONS``: ``spark.sql.shuffle.partitions`` (default: Spark's 200, which
  adaptive query execution coalesces).

Anything else (memory, executors) is ordinary Spark configuration: ``spark-submit --conf`` or
``$SPARK_CONF_DIR/spark-defaults.conf``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from features.engines.spark_sql import to_spark_sql
from features.schema import TABLES


class SparkUnavailableError(ValueError):
    """PySpark or Java is missing: the Spark engine cannot start (a ValueError so the CLI prints it, exit 2)."""


class SparkSettings(BaseModel):
    """Where Spark runs and where the validated tables are staged for it."""

    model_config = ConfigDict(extra="forbid")

    master: str | None = Field(None, description="Spark master URL (env CXPREDICT_SPARK_MASTER)")
    staging_dir: Path | None = Field(None, description="shared directory for staged tables (CXPREDICT_SPARK_STAGING)")
    shuffle_partitions: int | None = Field(None, ge=1, description="env CXPREDICT_SPARK_SHUFFLE_PARTITIONS")


def load_spark_settings(environ: dict[str, str] | None = None) -> SparkSettings:
    """Spark settings from environment variables (``os.environ`` unless ``environ`` is given)."""
    env = os.environ if environ is None else environ
    staging = env.get("CXPREDICT_SPARK_STAGING")
    partitions = env.get("CXPREDICT_SPARK_SHUFFLE_PARTITIONS")
    return SparkSettings(
        master=env.get("CXPREDICT_SPARK_MASTER") or None,
        staging_dir=Path(staging) if staging else None,
        shuffle_partitions=int(partitions) if partitions else None,
    )


def _java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    return bool(home and (Path(home) / "bin" / "java").exists()) or shutil.which("java") is not None


def spark_unavailable_reason() -> str | None:
    """Why the Spark engine cannot start here (no PySpark, no Java), or None when it can."""
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as err:
        return f"the Spark engine needs the 'spark' extra ({err.name} is not installed): uv sync --extra spark"
    if not _java_found():
        return "the Spark engine needs Java 17 or later (no JAVA_HOME and no 'java' on PATH)"
    return None


class SparkEngine:
    """Runs the transpiled feature SQL in a Spark session over the staged, validated tables."""

    name = "spark"

    def __init__(self, settings: SparkSettings) -> None:
        reason = spark_unavailable_reason()
        if reason:
            raise SparkUnavailableError(reason)
        self._settings = settings
        self._session: Any = None
        self._staged_con: duckdb.DuckDBPyConnection | None = None
        self._staging: Path | None = None

    def _spark(self) -> Any:
        if self._session is None:
            from pyspark.sql import SparkSession

            master = self._settings.master
            builder = (
                SparkSession.builder.appName("cxpredict-features")
                # DuckDB's connection runs in UTC (features.data.connect); date casts must agree.
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                .config("spark.ui.showConsoleProgress", "false")
            )
            if master:
                builder = builder.master(master)
            if master is None or master.startswith("local"):
                # Several local runs on one host would otherwise race for port 4040.
                builder = builder.config("spark.ui.enabled", "false")
            if self._settings.shuffle_partitions:
                builder = builder.config("spark.sql.shuffle.partitions", str(self._settings.shuffle_partitions))
            self._session = builder.getOrCreate()
            self._session.sparkContext.setLogLevel("WARN")
        return self._session

    def _stage(self, con: duckdb.DuckDBPyConnection) -> None:
        """Write every canonical table of ``con`` to Parquet and register it as a Spark view."""
        if self._staged_con is con:
            return
        self._drop_staging()
        base = self._settings.staging_dir
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        self._staging = Path(tempfile.mkdtemp(prefix="cxpredict-spark-", dir=base))
        spark = self._spark()
        for table in TABLES:
            path = self._staging / f"{table}.parquet"
            # Written by pyarrow: the loaded connection has DuckDB's file access switched off (features.data.lock_down).
            pq.write_table(con.table(table).to_arrow_table(), path)
            spark.read.parquet(str(path)).createOrReplaceTempView(table)
        self._staged_con = con

    def query(self, con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
        """Run DuckDB-dialect ``sql`` over the tables of ``con`` in Spark; the result comes back as pandas."""
        spark_sql = to_spark_sql(sql)
        self._stage(con)
        return self._spark().sql(spark_sql).toPandas()

    def _drop_staging(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
        self._staging = None
        self._staged_con = None

    def close(self) -> None:
        """Stop the Spark session and remove the staged tables."""
        self._drop_staging()
        if self._session is not None:
            self._session.stop()
            self._session = None
