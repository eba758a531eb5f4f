"""``cxpredict features materialize``: latest features of every customer into the online store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from features.data import load_data_dir
from features.definitions import feature_set_version
from features.online_store import write_store
from features.pipeline import FeatureConfig, build_features, default_as_of
from features.settings import Settings


def materialize(
    data_dir: Path, as_of: datetime | None, settings: Settings, lookback_days: int = 365
) -> tuple[int, datetime]:
    """Compute features at ``as_of`` (default: the day after the data ends) and swap them into the store.

    Returns:
        Number of customers written and the as-of time used.
    """
    con, _ = load_data_dir(Path(data_dir))
    t = as_of or default_as_of(con)
    frame = build_features(con, t, FeatureConfig(lookback_days=lookback_days))
    write_store(settings.online_store_dir, frame, t, feature_set_version())
    return len(frame), t
