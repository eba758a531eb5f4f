"""``cxpredict predict``: batch scores with the registry's champion models, through the shared runtime."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from features import registry
from features.data import load_data_dir
from features.definitions import CANCELLED_FEATURE
from features.pipeline import FeatureConfig, build_features, default_as_of, require_population
from features.scoring import risk_band, score_frame
from features.settings import Settings
from training.config import MODEL_NAMES


def predict(
    data_dir: Path, as_of: datetime | None, settings: Settings, alias: str = registry.CHAMPION
) -> tuple[pd.DataFrame, datetime]:
    """Score every known customer at ``as_of`` (CONTRACT §2) with each model's ``alias`` version.

    A customer cancelled before T gets churn probability 1.0 and the risk band ``churned``.

    Returns:
        The prediction frame (CONTRACT §3 columns; a model without that alias leaves its columns out) and T.

    Raises:
        features.pipeline.EmptyPopulationError: no customer is known at ``as_of``.
        ValueError: no model has ``alias``.
    """
    con, _ = load_data_dir(Path(data_dir))
    t = as_of or default_as_of(con)
    frame = build_features(con, t, FeatureConfig())
    require_population(con, frame, t)
    client = registry.configure(settings)
    out = frame[["customer_id"]].copy()
    found = False
    for name in MODEL_NAMES:
        try:
            bundle, version = registry.load_bundle(client, name, alias, settings.home / "models")
        except ValueError:
            continue
        found = True
        churn = out["churn_probability"].to_numpy() if "churn_probability" in out else None
        scores = score_frame(bundle, frame, churn)
        for col in scores.columns:
            out[col] = scores[col].to_numpy()
        out[f"{name}_version"] = version
    if not found:
        raise ValueError(f"no model has the alias '{alias}': run `cxpredict train` (or `cxpredict demo`) first")
    if "churn_probability" in out:
        cancelled = frame[CANCELLED_FEATURE].fillna(0).to_numpy() >= 0.5
        bands = [risk_band(p, c) for p, c in zip(out.churn_probability, cancelled, strict=True)]
        out.insert(2, "churn_risk_band", bands)
    out.insert(1, "as_of", pd.Timestamp(t))
    return out, t
