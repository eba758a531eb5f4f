"""``cxpredict train``: stacked snapshots → churn, CLTV and next-best-offer models → MLflow runs and versions.

Time discipline (CONTRACT §2): for a model at as-of T, every label comes from snapshots at cut-offs
``T' <= T - H``. The latest of them (``T - H``) is the time holdout: models are first fitted on the earlier
snapshots and scored on it (the metrics logged), then refitted on all snapshots for the registered version.
Within a fit, the newest snapshot calibrates the churn probabilities, so calibration is also out of time.

The recipe: read the data, check the cut-off, open the run, then each requested kind's trainer
(:data:`training.kinds.TRAINERS`) fits, evaluates and registers its model on a child run.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd

from features.data import load_data_dir
from features.pipeline import FeatureConfig, data_end, data_start
from features.settings import Settings
from training import registry
from training.config import TrainConfig
from training.kinds import TRAINERS
from training.kinds.base import Job, ModelResult, TrainingDataError, snapshot_cutoffs, snapshot_history
from training.kinds.base import xgb_params as _xgb_params
from training.kinds.churn import fit_churn
from training.kinds.cltv import btyd_scale, fit_cltv, spend_total_scale
from training.kinds.next_best_offer import offer_frame

__all__ = [
    "CHURN_POPULATION",
    "ModelResult",
    "TrainResult",
    "TrainingDataError",
    "_xgb_params",
    "btyd_scale",
    "encoder_input_columns",
    "fit_churn",
    "fit_cltv",
    "offer_frame",
    "snapshot_cutoffs",
    "snapshot_history",
    "spend_total_scale",
    "train",
]

log = logging.getLogger(__name__)


#: Who the churn and CLTV models are trained on (CONTRACT §2 asks that it be said in README and the run).
CHURN_POPULATION = (
    "every known customer at each snapshot (a transaction before it, of any amount, or a customers row signed up "
    "before it; a row without signup_ts counts from its first transaction), lapsed and never-bought ones included; "
    "customers cancelled before the snapshot are left out (answered as already churned, nothing to predict)"
)


@dataclass
class TrainResult:
    """What one ``train`` call produced: the parent run and each model's outcome."""

    run_id: str
    as_of: datetime
    models: dict[str, ModelResult]


def encoder_input_columns(frame: pd.DataFrame) -> list[str]:
    """Feature columns of a snapshot frame (drops ids, snapshot times and labels)."""
    drop = {
        "customer_id",
        "snapshot",
        "churned",
        "spend_h",
        "orders_h",
        "spend_cltv",
        "cltv_observed",
        "offer_ts",
        "offer_id",
        "accepted",
        "revenue",
        "propensity",
    }
    return [c for c in frame.columns if c not in drop]


def train(data_dir: Path, as_of: datetime | None, config: TrainConfig, settings: Settings) -> TrainResult:
    """Train and register the configured models on ``data_dir`` at ``as_of`` (default: end of data).

    Raises:
        TrainingDataError: the data cannot support the requested models.
    """
    con, report = load_data_dir(Path(data_dir))
    end = data_end(con)
    as_of = as_of or datetime(end.year, end.month, end.day) + timedelta(days=1)
    # Checked before the MLflow run is opened, so that a mistaken as-of leaves no failed, empty run behind.
    start = data_start(con)
    if as_of <= start:
        raise TrainingDataError(
            f"as-of {as_of:%Y-%m-%d %H:%M} is before the data starts: {data_dir} covers {start:%Y-%m-%d} to "
            f"{end:%Y-%m-%d}, and training needs history before T"
        )
    trainers = [trainer for name, trainer in TRAINERS.items() if name in config.models]
    if any(trainer.uses_snapshots for trainer in trainers):
        snapshot_cutoffs(as_of, start, config)
    feat_cfg = FeatureConfig(response_window_days=config.response_window_days, engine=config.engine)
    client = registry.configure(settings)
    registry.use_experiment()
    results: dict[str, ModelResult] = {}
    with tempfile.TemporaryDirectory() as tmpdir, feat_cfg, mlflow.start_run(run_name=f"train {as_of:%Y-%m-%d}") as run:
        # Prefixed keys: `mlflow run` has already logged its own entry-point parameters (as_of, data) on this run.
        mlflow.log_params(
            {
                "train.data_dir": str(data_dir),
                "train.as_of": as_of.isoformat(),
                "train.horizon_days": config.horizon_days,
                "data_hash": report.data_hash,
                "feature_set_version": feat_cfg.feature_set_version,
                "train.models": ",".join(config.models),
                "train.response_window_days": config.response_window_days,
                "train.engine": config.engine,
            }
        )
        mlflow.set_tag("churn_population", CHURN_POPULATION)
        for name, digest in report.file_hashes.items():
            mlflow.set_tag(f"data.sha256.{name}", digest)
        for table, rep in report.tables.items():
            if rep.file:
                mlflow.log_metrics(
                    {f"rows_{table}": rep.rows_kept, **{f"{table}_{k}": v for k, v in rep.oddities.items()}}
                )
        job = Job(con, as_of, config, feat_cfg, client, Path(tmpdir), report)
        for trainer in trainers:
            results[trainer.kind.name] = res = trainer.train(job)
            if res.skipped:
                mlflow.set_tag(f"{trainer.kind.name}_skipped", res.skipped)
                log.warning("%s skipped: %s", trainer.kind.name, res.skipped)
        return TrainResult(run_id=run.info.run_id, as_of=as_of, models=results)
