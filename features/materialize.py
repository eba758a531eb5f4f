"""``cxpredict features materialize``: latest features of every customer into the online store."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from pathlib import Path

from features.data import load_data_dir
from features.definitions import RESPONSE_WINDOW_DAYS
from features.engines import EngineName, open_engine
from features.pipeline import FeatureConfig, build_features, default_as_of, require_population
from features.settings import Settings
from features.stores.factory import open_online_store, write_online_store

log = logging.getLogger(__name__)


def _stored_customers(settings: Settings) -> int | None:
    """Customers in the current store generation, or None when there is no readable store."""
    try:
        return int(open_online_store(settings).metadata()["customers"])
    except (FileNotFoundError, sqlite3.Error, KeyError, TypeError, ValueError):
        return None


def materialize(
    data_dir: Path,
    as_of: datetime | None,
    settings: Settings,
    response_window_days: int = RESPONSE_WINDOW_DAYS,
    engine: EngineName = "duckdb",
) -> tuple[int, datetime]:
    """Compute every known customer's features at ``as_of`` (default: the day after the data ends) into the store.

    Returns:
        Number of customers written and the as-of time used.

    Raises:
        features.pipeline.EmptyPopulationError: no customer is known at ``as_of``; the store is left as it was
            (an empty store would make the running service answer 404 for everyone).
    """
    con, _ = load_data_dir(Path(data_dir))
    t = as_of or default_as_of(con)
    config = FeatureConfig(response_window_days=response_window_days)
    eng = open_engine(engine)
    try:
        frame = build_features(con, t, config, eng)
    finally:
        eng.close()
    require_population(con, frame, t)
    before = _stored_customers(settings)
    write_online_store(settings, frame, t, config.feature_set_version)
    if before is not None and len(frame) < before / 2:
        log.warning(
            "the online store now holds %d customers as of %s, fewer than half of the %d it held before: "
            "the service answers 404 for the others (check --as-of and --data)",
            len(frame),
            f"{t:%Y-%m-%d %H:%M}",
            before,
        )
    return len(frame), t
