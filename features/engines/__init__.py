"""Where the feature SQL runs: DuckDB in-process (the default) or Spark, chosen by name (``--engine``).

Both engines take the tables that :func:`features.data.load_data_dir` validated and loaded into DuckDB, and a
query in DuckDB's dialect from :mod:`features.definitions`; both return the same pandas frame. Only the
Spark engine imports PySpark, and only when it is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import duckdb
import pandas as pd

EngineName = Literal["duckdb", "spark"]


class Engine(Protocol):
    """Runs one DuckDB-dialect query over the canonical tables held by a DuckDB connection."""

    name: str

    def query(self, con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
        """The result of ``sql`` over the tables loaded in ``con``, as a pandas frame."""
        ...

    def close(self) -> None:
        """Release what the engine holds (a Spark session, staged files); idempotent."""
        ...


def _duckdb() -> Engine:
    from features.engines.duckdb import DuckDBEngine

    return DuckDBEngine()


def _spark() -> Engine:
    from features.engines.spark import SparkEngine, load_spark_settings

    return SparkEngine(load_spark_settings())


_OPENERS: dict[str, Callable[[], Engine]] = {"duckdb": _duckdb, "spark": _spark}


def open_engine(name: EngineName = "duckdb") -> Engine:
    """The engine called ``name``; the caller closes it.

    Raises:
        ValueError: unknown engine name.
        features.engines.spark.SparkUnavailableError: ``spark`` without PySpark or Java.
    """
    try:
        opener = _OPENERS[name]
    except KeyError:
        raise ValueError(f"unknown feature engine {name!r}; choose one of {sorted(_OPENERS)}") from None
    return opener()


__all__ = ["Engine", "EngineName", "open_engine"]
