"""``cxpredict predict``: batch scores with the registry's champion models, through the shared runtime."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from features import registry
from features.data import load_data_dir
from features.kinds import KINDS, score_frame
from features.pipeline import FeatureConfig, build_features, default_as_of, require_population
from features.settings import Settings


def predict(
    data_dir: Path, as_of: datetime | None, settings: Settings, alias: str = registry.CHAMPION
) -> tuple[pd.DataFrame, datetime]:
    """Score every known customer at ``as_of`` (CONTRACT §2) with each model's ``alias`` version.

    Each kind adds its columns (:attr:`features.kinds.base.ModelKind.columns`) and its version. A customer cancelled
    before T gets churn probability 1.0 and the risk band ``churned``.

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
    for name in KINDS:
        try:
            bundle, version = registry.load_bundle(client, name, alias, settings.home / "models")
        except ValueError:
            continue
        found = True
        # Earlier kinds' columns feed later ones (the churn probability, the CLTV fallback).
        known = {col: out[col].to_numpy() for col in out.columns if col != "customer_id"}
        scores = score_frame(bundle, frame, known=known)
        for col in scores.columns:
            out[col] = scores[col].to_numpy()
        out[f"{name}_version"] = version
    if not found:
        raise ValueError(f"no model has the alias '{alias}': run `cxpredict train` (or `cxpredict demo`) first")
    out.insert(1, "as_of", pd.Timestamp(t))
    return out, t
