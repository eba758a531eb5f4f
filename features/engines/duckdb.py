"""The default engine: the query runs in the DuckDB connection that holds the loaded tables."""

from __future__ import annotations

import duckdb
import pandas as pd


class DuckDBEngine:
    """In-process DuckDB: nothing to stage, nothing to close."""

    name = "duckdb"

    def query(self, con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
        """Run ``sql`` in ``con``."""
        return con.execute(sql).df()

    def close(self) -> None:
        """Nothing to release."""
