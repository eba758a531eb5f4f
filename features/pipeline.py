"""Running the feature and label definitions on a loaded data directory.

The definitions (:mod:`features.definitions`, :mod:`features.labels`) are SQL text; this module executes them
in the engine that :class:`FeatureConfig` names (DuckDB in-process by default, or Spark: :mod:`features.engines`)
and hands pandas frames to the edges (training, batch scoring, the online store).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from features import labels as label_defs
from features.data import attribute_columns
from features.definitions import RESPONSE_WINDOW_DAYS, feature_names, feature_query, feature_set_version
from features.engines import Engine, EngineName, open_engine

_NUMERIC_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "BOOLEAN",
}


class FeatureConfig(BaseModel):
    """How the feature table is built (the population is always every known customer at T, CONTRACT §2).

    The config also carries where the SQL runs: a job that builds many snapshots (``train``) opens the engine once,
    on first use, and releases it when the config is closed (``with config:`` or :meth:`close`).

    Attributes:
        response_window_days: Days after an offer's ``ts`` at which its outcome (``accepted``, ``revenue``) counts
            as known when ``offers.responded_ts`` is empty; part of the feature-set version.
        engine: Where the feature and label SQL runs (``--engine``); not part of the feature-set version, since
            both engines compute the same values.
    """

    model_config = ConfigDict(extra="forbid")

    response_window_days: int = Field(
        RESPONSE_WINDOW_DAYS, ge=0, description="days after an offer when its outcome counts as known (no responded_ts)"
    )
    engine: EngineName = Field("duckdb", description="where the feature and label SQL runs: duckdb or spark")
    _opened: Engine | None = PrivateAttr(None)

    @property
    def feature_set_version(self) -> str:
        """The feature-set version these settings compute."""
        return feature_set_version(self.response_window_days)

    def query_engine(self) -> Engine:
        """The engine named by :attr:`engine`, opened on first use and reused until :meth:`close`.

        Raises:
            features.engines.spark.SparkUnavailableError: ``spark`` without PySpark or Java.
        """
        if self._opened is None:
            self._opened = open_engine(self.engine)
        return self._opened

    def close(self) -> None:
        """Release the engine (a Spark session and its staged tables); idempotent."""
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def __enter__(self) -> FeatureConfig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_contract(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the data records cancellations (any non-null ``customers.churn_ts``)."""
    return bool(con.execute("SELECT count(churn_ts) > 0 FROM customers").fetchall()[0][0])


def data_end(con: duckdb.DuckDBPyConnection) -> datetime:
    """The latest transaction time in the data."""
    value = con.execute("SELECT max(ts) FROM transactions").fetchall()[0][0]
    if value is None:
        raise ValueError("transactions table is empty: nothing to compute features from")
    return value


def data_start(con: duckdb.DuckDBPyConnection) -> datetime:
    """The earliest transaction time in the data."""
    return con.execute("SELECT min(ts) FROM transactions").fetchall()[0][0]


def default_as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    """Midnight after the last transaction: "now" for the latest features when no as-of is given."""
    end = data_end(con)
    return datetime(end.year, end.month, end.day) + timedelta(days=1)


class EmptyPopulationError(ValueError):
    """No customer is known at the as-of time: there is nothing to compute, score or store."""


def require_population(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, as_of: datetime) -> None:
    """Refuse an empty feature table: an as-of outside the data would otherwise give an empty file or store.

    Raises:
        EmptyPopulationError: ``frame`` has no rows; the message gives the data's date range.
    """
    if len(frame):
        return
    start, end = data_start(con), data_end(con)
    raise EmptyPopulationError(
        f"no customer is known at {as_of:%Y-%m-%d %H:%M} (the data covers {start:%Y-%m-%d} to {end:%Y-%m-%d}): "
        "choose an as-of time inside the data"
    )


def attribute_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Static attribute columns of the ``customers`` table, in file order."""
    return [name for name, _ in attribute_columns(con)]


def build_features(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    config: FeatureConfig | None = None,
    engine: Engine | None = None,
) -> pd.DataFrame:
    """The customer-level feature table at ``as_of`` (one row per known customer, CONTRACT §2).

    Args:
        con: Connection with the canonical tables loaded (:func:`features.data.load_data_dir`).
        as_of: Cut-off T; rows at or after T are never read.
        config: Feature settings (the response window, the engine).
        engine: An already opened engine that overrides ``config.engine`` (:mod:`features.engines`).

    Returns:
        Frame with ``customer_id``, the registry features (float) and ``attr_*`` attribute columns.
    """
    config = config or FeatureConfig()
    attrs = attribute_columns(con)
    numeric = frozenset(name for name, kind in attrs if kind.split("(")[0] in _NUMERIC_TYPES)
    sql = feature_query(as_of, [n for n, _ in attrs], numeric, config.response_window_days)
    return (engine or config.query_engine()).query(con, sql)


def build_labels(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    horizon_days: int,
    cltv_horizon_days: int,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """Labels of the snapshot at ``as_of`` (see :func:`features.labels.label_query`), in ``config``'s engine."""
    sql = label_defs.label_query(as_of, horizon_days, cltv_horizon_days, is_contract(con))
    return (config or FeatureConfig()).query_engine().query(con, sql)


def build_snapshots(
    con: duckdb.DuckDBPyConnection,
    cutoffs: Sequence[datetime],
    horizon_days: int,
    cltv_horizon_days: int,
    config: FeatureConfig | None = None,
) -> pd.DataFrame:
    """Features joined to labels at each cut-off, stacked, with a ``snapshot`` column.

    Args:
        con: Loaded data.
        cutoffs: Snapshot times; callers keep them ``<= T - H`` so that no label reaches past T.
        horizon_days: Churn and spend horizon H.
        cltv_horizon_days: Horizon of the long-run value label.
        config: Feature settings (the response window, the engine that runs features and labels alike).
    """
    config = config or FeatureConfig()
    frames = []
    for cut in cutoffs:
        feats = build_features(con, cut, config)
        labs = build_labels(con, cut, horizon_days, cltv_horizon_days, config)
        frame = feats.merge(labs, on="customer_id", how="inner", validate="one_to_one")
        frame.insert(1, "snapshot", pd.Timestamp(cut))
        frames.append(frame)
    if not frames:
        raise ValueError("no snapshot cut-offs given")
    return pd.concat(frames, ignore_index=True)


def build_offer_outcomes(
    con: duckdb.DuckDBPyConnection, as_of: datetime, window_days: int, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """Offers shown in ``[as_of, as_of + window)`` with their outcome (see :mod:`features.labels`).

    Args:
        con: Loaded data.
        as_of: Start of the offer window.
        window_days: Length of the offer window.
        config: Feature settings: the engine the query runs in (DuckDB in ``con`` when None).
    """
    return (config or FeatureConfig()).query_engine().query(con, label_defs.offer_outcome_query(as_of, window_days))


def write_frame(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` to ``out`` (``.parquet`` or ``.csv``) atomically: a reader never sees half a file.

    Raises:
        ValueError: unsupported file extension.
        IsADirectoryError: ``out`` is a directory (checked first, so no temporary file is left behind).
    """
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"{out}: output must end in .parquet or .csv")
    if out.is_dir():
        raise IsADirectoryError(errno.EISDIR, "output is a directory, not a file", str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if out.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        # mkstemp makes the file private (0600); an output table is meant to be read by the team's other tools.
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "EmptyPopulationError",
    "FeatureConfig",
    "attribute_names",
    "build_features",
    "build_labels",
    "build_offer_outcomes",
    "build_snapshots",
    "data_end",
    "data_start",
    "default_as_of",
    "feature_names",
    "is_contract",
    "require_population",
    "write_frame",
]
