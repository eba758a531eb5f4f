"""``cxpredict evaluate``: score registered models on what actually happened after a past cut-off T.

The labels come from ``[T, T+H)``, so T must lie at least H days before the end of the data. Metrics are logged
to an MLflow run named ``evaluate`` so versions can be compared on the same window in the UI.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np

from features import registry
from features.data import load_data_dir
from features.kinds import CHURN, CLTV, score_frame
from features.pipeline import FeatureConfig, build_features, build_labels, data_end
from features.settings import Settings
from training.metrics import churn_metrics, cltv_metrics
from training.registry import use_experiment

#: The kinds scored on observed outcomes: the outcome column, the batch column that predicts it, the metrics.
OUTCOMES: dict[str, tuple[str, str, Callable[[np.ndarray, np.ndarray], dict[str, float]]]] = {
    CHURN.name: ("churned", "churn_probability", churn_metrics),
    CLTV.name: ("spend_h", "predicted_spend", cltv_metrics),
}


def evaluate(
    data_dir: Path, as_of: datetime, settings: Settings, alias: str = registry.CHAMPION, horizon_days: int = 90
) -> dict[str, dict[str, float]]:
    """Metrics of the churn and CLTV ``alias`` versions on the labels observed after ``as_of``.

    Raises:
        ValueError: the data does not cover ``[as_of, as_of + horizon)`` or no model has ``alias``.
    """
    con, report = load_data_dir(Path(data_dir))
    if as_of + timedelta(days=horizon_days) > data_end(con) + timedelta(days=1):
        raise ValueError(
            f"--as-of {as_of:%Y-%m-%d}: the data ends {data_end(con):%Y-%m-%d}, before the {horizon_days}-day "
            "outcome window closes; pick an earlier cut-off"
        )
    frame = build_features(con, as_of, FeatureConfig()).merge(
        build_labels(con, as_of, horizon_days, 365), on="customer_id"
    )
    client = registry.configure(settings)
    use_experiment()
    results: dict[str, dict[str, float]] = {}
    with mlflow.start_run(run_name="evaluate"):
        # Prefixed keys: under `mlflow run -e evaluate` this run already holds the entry point's own `as_of` and
        # `alias` parameters (as typed), and MLflow refuses to log a key twice with another value.
        mlflow.log_params({"evaluate.as_of": as_of.isoformat(), "evaluate.alias": alias, "data_hash": report.data_hash})
        for name, (label, column, metric) in OUTCOMES.items():
            try:
                bundle, version = registry.load_bundle(client, name, alias, settings.home / "models")
            except ValueError:
                continue
            scores = score_frame(bundle, frame)
            metrics = metric(frame[label].to_numpy(), scores[column].to_numpy())
            trained = datetime.fromisoformat(bundle.meta.trained_as_of or "1970-01-01")
            # Labels before the training as-of were seen in training: such a score is not a holdout score.
            in_sample = float(as_of < trained)
            mlflow.log_param(f"{name}_version", version)
            mlflow.log_metric(f"{name}_in_sample", in_sample)
            mlflow.log_metrics({f"{name}_{k}": v for k, v in metrics.items()})
            results[name] = {"version": float(version), "in_sample": in_sample, **metrics}
    if not results:
        raise ValueError(f"no {' or '.join(OUTCOMES)} model has the alias '{alias}'")
    return results
