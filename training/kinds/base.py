"""What every kind's trainer shares: the job (data, cut-off, settings, registry), boosters, results and logging.

A trainer (:class:`Trainer`, one per model kind in :mod:`training.kinds`) fits its model on the training part,
scores it on the time holdout, logs both on its own MLflow child run, refits on everything and registers the
result. Churn and CLTV learn from the same stacked snapshots: :attr:`Job.snapshots` builds them once, on first use.
"""

from __future__ import annotations

import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

from features.data import LoadReport
from features.kinds import ModelKind
from features.pipeline import FeatureConfig, build_snapshots, data_start
from features.registry import HOLDOUT_BUNDLE
from features.scoring import Bundle, Encoder
from training import registry
from training.backtest import BACKTEST_HISTORY_DAYS, History
from training.baselines import BTYDAtCut, Comparison
from training.config import TrainConfig

log = logging.getLogger(__name__)


class TrainingDataError(ValueError):
    """The data cannot support the requested model (too short, too few customers, no churners)."""


@dataclass
class ModelResult:
    """What training one model produced."""

    name: str
    version: int | None = None
    alias: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)


# --- snapshots --------------------------------------------------------------------------------------------
def snapshot_cutoffs(as_of: datetime, start: datetime, config: TrainConfig) -> tuple[list[datetime], datetime]:
    """Training cut-offs (oldest first) and the holdout cut-off ``T - H``.

    Training cut-offs are ``T - 2H - k*step`` so that their label windows end before the holdout starts.

    Raises:
        TrainingDataError: the history before T is too short for even one training snapshot.
    """
    h = timedelta(days=config.horizon_days)
    holdout = as_of - h
    earliest = start + timedelta(days=config.min_history_days)
    cuts = [as_of - 2 * h - timedelta(days=k * config.snapshot_step_days) for k in range(config.max_snapshots)]
    cuts = sorted(c for c in cuts if c >= earliest)
    if not cuts:
        need = 2 * config.horizon_days + config.min_history_days
        raise TrainingDataError(
            f"history too short: training at {as_of:%Y-%m-%d} with horizon {config.horizon_days} days needs data "
            f"from {as_of - timedelta(days=need):%Y-%m-%d} ({need} days), but it starts {start:%Y-%m-%d}"
        )
    return cuts, holdout


def snapshot_history(con: duckdb.DuckDBPyConnection, config: TrainConfig, feat_cfg: FeatureConfig) -> History:
    """Snapshots at any cut-off, built like the training ones (features and labels), each cut-off once."""
    built: dict[pd.Timestamp, pd.DataFrame] = {}

    def snapshots_at(cuts: Sequence[pd.Timestamp]) -> pd.DataFrame:
        missing = [pd.Timestamp(c) for c in cuts if pd.Timestamp(c) not in built]
        if missing:
            frame = build_snapshots(con, missing, config.horizon_days, config.cltv_horizon_days, feat_cfg)
            built.update({c: frame[frame.snapshot == c] for c in missing})
        return pd.concat([built[pd.Timestamp(c)] for c in cuts], ignore_index=True)

    min_history = min(config.min_history_days, BACKTEST_HISTORY_DAYS)
    return History(pd.Timestamp(data_start(con)), min_history, snapshots_at, config.min_customers)


@dataclass(frozen=True)
class Snapshots:
    """The stacked customer snapshots churn and CLTV learn from, split in time.

    Attributes:
        frame: Every snapshot (features and labels).
        train: The snapshots before the holdout cut-off.
        hold: The holdout snapshot (``T - H``).
        holdout_cut: Its cut-off.
        encoder: The input encoding fitted on ``frame``.
        params: What every run learning from them logs.
    """

    frame: pd.DataFrame
    train: pd.DataFrame
    hold: pd.DataFrame
    holdout_cut: datetime
    encoder: Encoder
    params: dict[str, Any]


# --- boosters ---------------------------------------------------------------------------------------------
def xgb_params(config: TrainConfig, objective: str) -> dict[str, Any]:
    """XGBoost parameters for ``objective`` from the training settings."""
    p = config.xgb
    params: dict[str, Any] = {
        "objective": objective,
        "max_depth": p.max_depth,
        "eta": p.learning_rate,
        "subsample": p.subsample,
        "colsample_bytree": p.colsample_bytree,
        "min_child_weight": p.min_child_weight,
        "tree_method": "hist",
        "seed": config.seed,
        "nthread": 2,
    }
    if objective == "reg:tweedie":
        params["tweedie_variance_power"] = 1.3
    return params


def fit_booster(
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
    objective: str,
    valid: np.ndarray | None = None,
    refit: bool = True,
    rounds: int | None = None,
    monotone: str | None = None,
) -> xgb.Booster:
    """Fit one booster; with early stopping, the number of trees is chosen on the ``valid`` rows.

    Args:
        x: Encoded rows.
        y: Labels.
        config: Training settings (``config.xgb.early_stopping_rounds`` turns the choice on).
        objective: XGBoost objective.
        valid: Boolean mask of the rows that choose the number of trees (the newest snapshot, so the choice is made
            on later data than the trees are fitted on). ``None``, or a mask of no or all rows, fits
            ``n_estimators`` trees on every row.
        refit: After choosing, refit that many trees on every row (``True``), or return the booster fitted without
            the ``valid`` rows, cut to that many trees (``False``: the caller uses those rows for something else,
            such as calibration).
        rounds: Fit exactly this many trees on every row (no choice).
        monotone: XGBoost ``monotone_constraints`` string.
    """
    params = xgb_params(config, objective)
    if monotone is not None:
        params["monotone_constraints"] = monotone
    if rounds is not None:
        return xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)
    rounds = config.xgb.n_estimators
    if config.xgb.early_stopping_rounds is not None and valid is not None and 0 < int(valid.sum()) < len(valid):
        dfit = xgb.DMatrix(x[~valid], label=y[~valid], missing=np.nan)
        dvalid = xgb.DMatrix(x[valid], label=y[valid], missing=np.nan)
        chosen = xgb.train(
            params,
            dfit,
            num_boost_round=rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=config.xgb.early_stopping_rounds,
            verbose_eval=False,
        )
        rounds = chosen.best_iteration + 1
        if not refit:
            return chosen[:rounds]
    return xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan), num_boost_round=rounds)


# --- logging ----------------------------------------------------------------------------------------------
def log_table(df: pd.DataFrame, name: str, out: Path) -> None:
    """Log a table as a CSV artifact of the active run."""
    path = out / name
    df.to_csv(path)
    mlflow.log_artifact(str(path))


def log_comparison(comparison: Comparison, out: Path) -> None:
    """Log the holdout comparison with the baselines: their metrics, the table (``baselines.csv``), the verdict."""
    mlflow.log_metrics(comparison.metrics)
    log_table(comparison.table, "baselines.csv", out)
    mlflow.set_tag("baselines_verdict", comparison.verdict[:5000])


def warn_dropped(encoder: Encoder) -> None:
    """Say in the run's log which attributes were refused as features, and why (no values are named)."""
    for column, reason in encoder.dropped.items():
        log.warning("attribute %s is not used as a feature: %s", column, reason)


def _log_dropped(encoder: Encoder) -> None:
    """Record the refused attributes on the model's MLflow run: a param listing them, a tag per reason."""
    if encoder.dropped:
        mlflow.log_param("dropped_features", ",".join(sorted(encoder.dropped)))
        for column, reason in encoder.dropped.items():
            mlflow.set_tag(f"dropped_feature.{column}", reason)


def log_trees(bundle: Bundle) -> None:
    """Log how many trees each of the registered model's boosters kept (early stopping chooses it)."""
    mlflow.log_metrics({f"trees_{name}": booster.num_boosted_rounds() for name, booster in bundle.boosters.items()})


# --- the job ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """What every model of one training run shares: the data, the cut-off, the settings and the registry."""

    con: duckdb.DuckDBPyConnection
    as_of: datetime
    config: TrainConfig
    feat_cfg: FeatureConfig
    client: Any
    tmp: Path
    report: LoadReport

    def params(self) -> dict[str, Any]:
        """Parameters logged on every model's run, so each can be reproduced on its own."""
        return {
            "as_of": self.as_of.isoformat(),
            "feature_set_version": self.feat_cfg.feature_set_version,
            "data_hash": self.report.data_hash,
            "seed": self.config.seed,
            "response_window_days": self.feat_cfg.response_window_days,
        }

    @functools.cached_property
    def snapshots(self) -> Snapshots:
        """The stacked snapshots (built on first use, once per job).

        Raises:
            TrainingDataError: a snapshot has fewer than ``config.min_customers`` customers.
        """
        config = self.config
        cuts, holdout_cut = snapshot_cutoffs(self.as_of, data_start(self.con), config)
        frame = build_snapshots(
            self.con, [*cuts, holdout_cut], config.horizon_days, config.cltv_horizon_days, self.feat_cfg
        )
        counts = frame.groupby("snapshot").size()
        if counts.min() < config.min_customers:
            raise TrainingDataError(
                f"too few customers: {counts.min()} active at {counts.idxmin():%Y-%m-%d} (need {config.min_customers})"
            )
        encoder = Encoder.fit(frame)
        warn_dropped(encoder)
        params = {
            **self.params(),
            "horizon_days": config.horizon_days,
            "snapshots": ",".join(f"{c:%Y-%m-%d}" for c in cuts),
            "holdout_snapshot": f"{holdout_cut:%Y-%m-%d}",
            "train_population": "known_not_cancelled",
        }
        return Snapshots(
            frame=frame,
            train=frame[frame.snapshot < pd.Timestamp(holdout_cut)],
            hold=frame[frame.snapshot == pd.Timestamp(holdout_cut)],
            holdout_cut=holdout_cut,
            encoder=encoder,
            params=params,
        )

    @functools.cached_property
    def history(self) -> History | None:
        """Where the churn and CLTV back-tests a year earlier get their snapshots (None: turned off)."""
        if not self.config.year_ago_backtest:
            return None
        return snapshot_history(self.con, self.config, self.feat_cfg)

    @functools.cached_property
    def transactions(self) -> pd.DataFrame:
        """``customer_id``, ``ts`` and ``amount`` of every transaction before T (read once per job)."""
        return self.con.execute(
            f"SELECT customer_id, ts, amount FROM transactions WHERE ts < TIMESTAMP '{self.as_of:%Y-%m-%d %H:%M:%S}'"
        ).df()

    @functools.cached_property
    def holdout_btyd(self) -> BTYDAtCut | None:
        """BG/NBD + Gamma-Gamma on the purchases before the holdout cut-off: the baselines, CLTV's horizon ratio.

        None (said in the log) where it cannot be fitted, such as without a purchase before the cut-off.
        """
        cut = self.snapshots.holdout_cut
        tx = self.transactions
        try:
            return BTYDAtCut.fit(tx[tx.ts < pd.Timestamp(cut)], cut)
        except ValueError as exc:
            log.warning("BG/NBD + Gamma-Gamma not fitted at the holdout cut-off %s: %s", f"{cut:%Y-%m-%d}", exc)
            return None

    def _stamp(self, bundle: Bundle, trained_as_of: datetime) -> None:
        bundle.meta.trained_as_of = trained_as_of.isoformat()
        bundle.meta.feature_set_version = self.feat_cfg.feature_set_version
        bundle.meta.response_window_days = self.feat_cfg.response_window_days

    def log_holdout_bundle(self, bundle: Bundle, holdout_start: datetime) -> None:
        """Log ``bundle``, fitted on the rows before ``holdout_start`` only, beside the version the run registers.

        ``cxpredict target`` evaluates its decisions against the baselines on the offer model's holdout with the
        three kinds' holdout bundles (:func:`features.registry.load_holdout_bundle`): the registered versions saw
        those rows.
        """
        self._stamp(bundle, holdout_start)
        path = bundle.save(self.tmp / f"{bundle.kind}_{HOLDOUT_BUNDLE}")
        mlflow.log_artifacts(str(path), HOLDOUT_BUNDLE)

    def register(self, bundle: Bundle) -> tuple[int, str]:
        """Log ``bundle`` to the active run as a new version of its kind; return the version and its alias."""
        self._stamp(bundle, self.as_of)
        path = bundle.save(self.tmp / f"{bundle.kind}_bundle")
        _log_dropped(bundle.encoder)
        version = registry.log_bundle(path, bundle.kind, self.feat_cfg.feature_set_version)
        assert version is not None
        alias = registry.assign_alias(self.client, bundle.kind, version, self.config.promote)
        return version, alias


class Trainer(ABC):
    """Training's side of one model kind.

    Attributes:
        kind: The kind it trains (:mod:`features.kinds`).
        uses_snapshots: Whether it learns from :attr:`Job.snapshots` (their history is checked before the run).
    """

    kind: ClassVar[ModelKind]
    uses_snapshots: ClassVar[bool] = False

    @abstractmethod
    def train(self, job: Job) -> ModelResult:
        """Fit, evaluate on the holdout and register the kind's model on its own MLflow child run.

        Raises:
            TrainingDataError: the data cannot support the model (a kind may instead return a skipped result).
        """
