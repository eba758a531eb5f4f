"""``cxpredict train``: stacked snapshots → churn, CLTV and next-best-offer models → MLflow runs and versions.

Time discipline (CONTRACT §2): for a model at as-of T, every label comes from snapshots at cut-offs
``T' <= T - H``. The latest of them (``T - H``) is the time holdout: models are first fitted on the earlier
snapshots and scored on it (the metrics logged), then refitted on all snapshots for the registered version.
Within a fit, the newest snapshot calibrates the churn probabilities, so calibration is also out of time.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression

from features.churn_blend import blend_probability, logit
from features.data import LoadReport, load_data_dir
from features.pipeline import (
    FeatureConfig,
    build_features,
    build_offer_outcomes,
    build_snapshots,
    data_end,
    data_start,
)
from features.scoring import Bundle, Encoder
from features.settings import Settings
from training import churn_model, cltv_model, plots, registry
from training.btyd import BTYDModel, bgnbd_metadata, rfm_summary
from training.calibration import expected_calibration_error, reliability_table
from training.config import TrainConfig
from training.metrics import churn_metrics, cltv_metrics, decile_table
from training.nbo import train_offer_policy

log = logging.getLogger(__name__)


#: Who the churn and CLTV models are trained on (CONTRACT §2 asks that it be said in README and the run).
CHURN_POPULATION = (
    "every known customer at each snapshot (a transaction before it, of any amount, or a customers row signed up "
    "before it; a row without signup_ts counts from its first transaction), lapsed and never-bought ones included; "
    "customers cancelled before the snapshot are left out (answered as already churned, nothing to predict)"
)


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


@dataclass
class TrainResult:
    """What one ``train`` call produced: the parent run and each model's outcome."""

    run_id: str
    as_of: datetime
    models: dict[str, ModelResult]


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


def _xgb_params(config: TrainConfig, objective: str) -> dict[str, Any]:
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


def _fit_booster(
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
    params = _xgb_params(config, objective)
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


# --- churn ------------------------------------------------------------------------------------------------
def fit_churn(frame: pd.DataFrame, config: TrainConfig, encoder: Encoder) -> Bundle:
    """Fit the churn booster and an RFM logistic regression, blend and calibrate them out of time.

    Both are fitted on all but the newest snapshot of ``frame``; the newest chooses the number of trees (early
    stopping) and fits the blend of the two logits (:mod:`training.churn_model`), whose intercept is then moved to
    the mean churn rate of all snapshots.
    Recency only ever raises the churn score (a monotone constraint): the direction is known, and it keeps the
    trees from chasing noise in sparse recency ranges.
    """
    snaps = sorted(frame.snapshot.unique())
    cal_mask = (frame.snapshot == snaps[-1]).to_numpy()
    fit_mask = ~cal_mask if len(snaps) > 1 else cal_mask
    if len(snaps) == 1:
        log.warning("only one snapshot: churn calibration is fitted on the training snapshot itself")
    y = frame.churned.to_numpy().astype(int)
    if y[fit_mask].min() == y[fit_mask].max() or y[cal_mask].min() == y[cal_mask].max():
        raise TrainingDataError("no churners (or no non-churners) in the training snapshots: cannot fit churn")
    x = encoder.encode_frame(frame)
    monotone = "(" + ",".join("1" if c == "recency_days" else "0" for c in encoder.columns) + ")"
    params = {**_xgb_params(config, "binary:logistic"), "monotone_constraints": monotone}
    depth, depth_note = churn_model.choose_depth(
        params, x, y, frame.snapshot.to_numpy(), config.horizon_days, config.xgb.n_estimators
    )
    if depth is not None:
        config = config.model_copy(update={"xgb": config.xgb.model_copy(update={"max_depth": depth})})
    if len(snaps) > 1:
        # Fitted without the newest snapshot, which chooses the number of trees and then fits the blend.
        booster = _fit_booster(x, y, config, "binary:logistic", valid=cal_mask, refit=False, monotone=monotone)
    else:
        booster = _fit_booster(x, y, config, "binary:logistic", monotone=monotone)
    cols = encoder.columns
    # Booster and regression are not refitted with the newest snapshot: a refit would move their score levels
    # (the newest snapshot's churn rate enters them) and the blend, fitted on the old levels, would double count.
    rfm = churn_model.fit_rfm(x[fit_mask], y[fit_mask], cols)
    raw_cal = booster.inplace_predict(x[cal_mask])
    weights, intercept = churn_model.fit_blend(raw_cal, x[cal_mask], y[cal_mask], rfm, cols)
    rate_cal, rate_all = float(y[cal_mask].mean()), float(y.mean())
    z_cal = logit(
        blend_probability(raw_cal, x[cal_mask], cols, {"rfm": rfm, "weights": weights, "intercept": intercept})
    )
    blend = {
        "rfm": rfm,
        "weights": weights,
        "intercept": intercept + churn_model.shift_to_rate(z_cal, rate_all),
        "calibration_rate": rate_cal,
        "target_rate": rate_all,
        "note": (
            f"logistic blend of the booster's logit and an RFM logistic regression's, fitted on the snapshot at "
            f"{pd.Timestamp(snaps[-1]):%Y-%m-%d} (churn rate {rate_cal:.4f}), intercept moved to the mean churn "
            f"rate of the {len(snaps)} training snapshots ({rate_all:.4f})"
        ),
    }
    blend["note"] += f"; {depth_note}"
    meta = {"blend": blend, "horizon_days": config.horizon_days}
    return Bundle(kind="churn", meta=meta, encoder=encoder, boosters={"main": booster})


def isotonic_calibration(raw: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Isotonic map from raw scores to churn probabilities, never exactly 0 or 1.

    Isotonic regression gives the lowest block of scores the rate 0 when none of its ``m`` customers churned, and
    the highest the rate 1 when all did, so a customer scored there would be called certain on a few hundred
    examples (a quarter of the demo's customers got exactly 1.0). Those two end blocks take the rule of
    succession instead, ``1 / (m + 2)`` and ``(m + 1) / (m + 2)``, but never beyond the next block's rate (so the
    map stays monotone); every other block keeps its rate.

    Args:
        raw: The booster's scores on the calibration snapshot.
        y: Whether each of those customers churned (0/1).

    Returns:
        ``{"x": thresholds, "y": probabilities}``, read by ``np.interp`` when scoring.
    """
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    fitted = iso.predict(raw)
    rates = iso.y_thresholds_.copy()
    # Only the end blocks move, and never past their neighbours: the map stays monotone and every other block
    # keeps its observed rate.
    if (m := int(np.sum(fitted <= 0.0))) > 0:
        above = rates[rates > 0.0]
        rates[rates <= 0.0] = min(1.0 / (m + 2), above.min() if above.size else 1.0)
    if (m := int(np.sum(fitted >= 1.0))) > 0:
        below = rates[rates < 1.0]
        rates[rates >= 1.0] = max((m + 1) / (m + 2), below.max() if below.size else 0.0)
    return {"x": iso.X_thresholds_.tolist(), "y": rates.tolist()}


# --- cltv -------------------------------------------------------------------------------------------------
def fit_cltv(
    frame: pd.DataFrame,
    config: TrainConfig,
    encoder: Encoder,
    cltv_scale: float,
    method: str,
    daily: pd.Series | None = None,
) -> Bundle:
    """Fit the spend-over-H booster (Tweedie); long-horizon value either by its own booster or by a scale.

    ``daily`` (:func:`training.cltv_model.daily_spend` of the transactions before the target window) sets the
    spend level for the target window's season (``spend_total_scale``).
    """
    x = encoder.encode_frame(frame)
    newest = (frame.snapshot == frame.snapshot.max()).to_numpy()
    y_spend = frame.spend_h.clip(lower=0).to_numpy()
    spend = _fit_booster(x, y_spend, config, "reg:tweedie", valid=newest)
    scale, scale_note = spend_total_scale(frame, config, daily)
    boosters = {"main": spend}
    if method == "model":
        observed = frame.cltv_observed.to_numpy(dtype=bool)
        long_frame = frame[observed]
        boosters["cltv"] = _fit_booster(
            x[observed],
            long_frame.spend_cltv.clip(lower=0).to_numpy(),
            config,
            "reg:tweedie",
            valid=(long_frame.snapshot == long_frame.snapshot.max()).to_numpy(),
        )
    meta = {
        "horizon_days": config.horizon_days,
        "cltv_horizon_days": config.cltv_horizon_days,
        "cltv_method": method,
        # Value over the CLTV horizon is ``spend x cltv_scale`` (btyd_ratio): a year holds every season, so the
        # seasonal factor of the H-day spend is taken out of it again.
        "cltv_scale": cltv_scale / scale,
        "spend_scale": scale,
        "spend_scale_note": scale_note,
    }
    return Bundle(kind="cltv", meta=meta, encoder=encoder, boosters=boosters)


def spend_total_scale(frame: pd.DataFrame, config: TrainConfig, daily: pd.Series | None) -> tuple[float, str]:
    """Factor on every spend prediction: the target window's season (:mod:`training.cltv_model` says how)."""
    level = cltv_model.level_for_snapshots(frame.snapshot, config.horizon_days, daily)
    return level.scale, level.note


def btyd_scale(transactions: pd.DataFrame, as_of: datetime, config: TrainConfig) -> tuple[float, BTYDModel, Any]:
    """Ratio of BG/NBD + Gamma-Gamma value over the CLTV horizon to value over H, fitted on data before T."""
    summary = rfm_summary(transactions, pd.Timestamp(as_of))
    model = BTYDModel().fit(summary)
    short = float(np.sum(model.predict_spend(summary, config.horizon_days)))
    long = float(np.sum(model.predict_clv(summary, config.cltv_horizon_days)))
    return (long / short if short > 0 else config.cltv_horizon_days / config.horizon_days), model, summary


# --- next best offer --------------------------------------------------------------------------------------
def offer_frame(
    con: duckdb.DuckDBPyConnection, as_of: datetime, start: datetime, config: TrainConfig, feat_cfg: FeatureConfig
) -> pd.DataFrame:
    """Offer outcomes joined to the customer's features at the start of each offer window before T."""
    step = timedelta(days=config.snapshot_step_days)
    frames = []
    cut = as_of - step
    while cut >= start:
        outcomes = build_offer_outcomes(con, cut, config.snapshot_step_days, feat_cfg)
        if len(outcomes):
            feats = build_features(con, cut, feat_cfg)
            joined = outcomes.merge(feats, on="customer_id", how="inner")
            joined.insert(1, "snapshot", pd.Timestamp(cut))
            frames.append(joined)
        cut -= step
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- orchestration ----------------------------------------------------------------------------------------
def _log_table(df: pd.DataFrame, name: str, out: Path) -> None:
    path = out / name
    df.to_csv(path)
    mlflow.log_artifact(str(path))


@dataclass(frozen=True)
class _Job:
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

    def register(self, bundle: Bundle, name: str) -> tuple[int, str]:
        """Log ``bundle`` to the active run as a new version of ``name``; return the version and its alias."""
        bundle.meta["trained_as_of"] = self.as_of.isoformat()
        bundle.meta["feature_set_version"] = self.feat_cfg.feature_set_version
        bundle.meta["response_window_days"] = self.feat_cfg.response_window_days
        path = bundle.save(self.tmp / f"{name}_bundle")
        _log_dropped(bundle.encoder)
        version = registry.log_bundle(path, name, self.feat_cfg.feature_set_version)
        assert version is not None
        alias = registry.assign_alias(self.client, name, version, self.config.promote)
        return version, alias


def _train_churn_cltv(job: _Job) -> dict[str, ModelResult]:
    con, as_of, config, tmp = job.con, job.as_of, job.config, job.tmp
    results: dict[str, ModelResult] = {}
    start = data_start(con)
    cuts, holdout_cut = snapshot_cutoffs(as_of, start, config)
    frame = build_snapshots(con, [*cuts, holdout_cut], config.horizon_days, config.cltv_horizon_days, job.feat_cfg)
    counts = frame.groupby("snapshot").size()
    if counts.min() < config.min_customers:
        raise TrainingDataError(
            f"too few customers: {counts.min()} active at {counts.idxmin():%Y-%m-%d} (need {config.min_customers})"
        )
    train = frame[frame.snapshot < pd.Timestamp(holdout_cut)]
    hold = frame[frame.snapshot == pd.Timestamp(holdout_cut)]
    encoder = Encoder.fit(frame)
    _warn_dropped(encoder)
    common = {
        **job.params(),
        "horizon_days": config.horizon_days,
        "snapshots": ",".join(f"{c:%Y-%m-%d}" for c in cuts),
        "holdout_snapshot": f"{holdout_cut:%Y-%m-%d}",
        "train_population": "known_not_cancelled",
    }

    if "churn" in config.models:
        with mlflow.start_run(run_name="churn", nested=True):
            mlflow.log_params({**common, **{f"xgb_{k}": v for k, v in config.xgb.model_dump().items()}})
            mlflow.log_metrics({"rows_train": len(train), "rows_holdout": len(hold)})
            eval_bundle = fit_churn(train, config, encoder)
            p = eval_bundle.churn_probability(encoder.encode_frame(hold))
            y = hold.churned.to_numpy()
            if y.min() == y.max():
                raise TrainingDataError("the holdout snapshot has no churners (or only churners): cannot evaluate")
            metrics = churn_metrics(y, p)
            metrics["ece"] = expected_calibration_error(y, p)
            mlflow.log_metrics(metrics)
            _log_table(reliability_table(y, p), "reliability_table.csv", tmp)
            mlflow.set_tag("churn_calibration", eval_bundle.meta["blend"]["note"][:5000])
            for path in plots.churn_plots(y, p, tmp):
                mlflow.log_artifact(str(path), "plots")
            final = fit_churn(frame, config, encoder)
            _log_trees(final)
            gains = final.boosters["main"].get_score(importance_type="total_gain")
            mlflow.log_artifact(str(plots.importance_plot(encoder.columns, gains, tmp, "churn")), "plots")
            version, alias = job.register(final, "churn")
            results["churn"] = ModelResult("churn", version, alias, metrics)

    if "cltv" in config.models:
        with mlflow.start_run(run_name="cltv", nested=True):
            mlflow.log_params(common | {"cltv_horizon_days": config.cltv_horizon_days})
            tx = con.execute(
                f"SELECT customer_id, ts, amount FROM transactions WHERE ts < TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
            ).df()
            observed = frame.cltv_observed.astype(bool)
            method = "model" if observed.sum() >= config.min_customers * 2 else "btyd_ratio"
            scale, _, _ = btyd_scale(tx[tx.ts < pd.Timestamp(holdout_cut)], holdout_cut, config)
            daily_hold = cltv_model.daily_spend(tx[tx.ts < pd.Timestamp(holdout_cut)])
            eval_bundle = fit_cltv(train, config, encoder, scale, method, daily_hold)
            spend, _ = eval_bundle.spend(encoder.encode_frame(hold))
            metrics = cltv_metrics(hold.spend_h.to_numpy(), spend)
            mlflow.log_metrics(metrics)
            mlflow.set_tag("spend_scale_note", eval_bundle.meta["spend_scale_note"][:5000])
            deciles = decile_table(hold.spend_h.to_numpy(), spend)
            _log_table(deciles, "cltv_deciles.csv", tmp)
            mlflow.log_artifact(str(plots.decile_plot(deciles, tmp)), "plots")
            scale_final, btyd, summary = btyd_scale(tx, as_of, config)
            bgnbd = bgnbd_metadata(btyd, summary)
            mlflow.log_params(
                {"bgnbd_degenerate": bgnbd["degenerate"], "bgnbd_p_alive_q01": round(bgnbd["p_alive_q01"], 4)}
            )
            mlflow.log_params({"cltv_method": method, "cltv_scale": round(scale_final, 4)})
            mlflow.log_params({f"btyd_{k}": round(float(v), 5) for k, v in btyd.bg_.params_.items()})
            note = f"value over {config.cltv_horizon_days} days " + (
                "from a model trained on observed windows"
                if method == "model"
                else f"extrapolated from the {config.horizon_days}-day spend by the BG/NBD + Gamma-Gamma ratio "
                f"{scale_final:.2f} (history shorter than the CLTV horizon)"
            )
            mlflow.set_tag("cltv_method_note", note)
            final = fit_cltv(frame, config, encoder, scale_final, method, cltv_model.daily_spend(tx))
            # What the per-customer answers need (features.scoring.Bundle.cltv_answers): BG/NBD and a fallback.
            final.meta["bgnbd"] = bgnbd
            aov = frame.avg_order_value[frame.avg_order_value > 0]
            final.meta["mean_order_value"] = float(aov.mean()) if len(aov) else None
            mlflow.log_param("spend_scale", round(float(final.meta["spend_scale"]), 6))
            _log_trees(final)
            version, alias = job.register(final, "cltv")
            results["cltv"] = ModelResult("cltv", version, alias, metrics, notes=[note])
    return results


def _warn_dropped(encoder: Encoder) -> None:
    """Say in the run's log which attributes were refused as features, and why (no values are named)."""
    for column, reason in encoder.dropped.items():
        log.warning("attribute %s is not used as a feature: %s", column, reason)


def _log_dropped(encoder: Encoder) -> None:
    """Record the refused attributes on the model's MLflow run: a param listing them, a tag per reason."""
    if encoder.dropped:
        mlflow.log_param("dropped_features", ",".join(sorted(encoder.dropped)))
        for column, reason in encoder.dropped.items():
            mlflow.set_tag(f"dropped_feature.{column}", reason)


def _log_trees(bundle: Bundle) -> None:
    """Log how many trees each of the registered model's boosters kept (early stopping chooses it)."""
    mlflow.log_metrics({f"trees_{name}": booster.num_boosted_rounds() for name, booster in bundle.boosters.items()})


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


def _train_nbo(job: _Job) -> ModelResult:
    con, as_of, config = job.con, job.as_of, job.config
    n_offers = con.execute("SELECT count(*) FROM offers").fetchall()[0][0]
    if n_offers == 0:
        return ModelResult("next_best_offer", skipped="no offers table (or it is empty): nothing to learn offers from")
    frame = offer_frame(con, as_of, data_start(con), config, job.feat_cfg)
    if len(frame) < config.min_customers:
        return ModelResult("next_best_offer", skipped=f"only {len(frame)} offer outcomes before {as_of:%Y-%m-%d}")
    catalog = con.execute("SELECT * FROM offer_catalog").df()
    snaps = sorted(frame.snapshot.unique())
    if len(snaps) >= 2:
        hold_mask = (frame.snapshot == snaps[-1]).to_numpy()
        split = "time"
    else:
        # One campaign only (Hillstrom): a seeded random split by customer is the honest holdout left.
        rng = np.random.default_rng(config.seed)
        hold_mask = rng.random(len(frame)) < 0.3
        split = "random"
    # The whole frame: its customer_id lets the encoder count customers (not offer rows) per category.
    encoder = Encoder.fit(frame)
    _warn_dropped(encoder)
    with mlflow.start_run(run_name="next_best_offer", nested=True):
        mlflow.log_params({**job.params(), "holdout_split": split, "offer_rows": len(frame)})
        trained = train_offer_policy(frame, hold_mask, catalog, config, encoder)
        metrics, ev = trained.metrics, trained.evaluation
        mlflow.log_metrics(metrics)
        mlflow.set_tag("nbo_method", trained.final.meta["method"])
        mlflow.set_tag("nbo_policy", f"{trained.final.meta['policy']} ({trained.final.meta['learner']}-learner)")
        mlflow.set_tag("nbo_policy_reason", trained.final.meta["policy_reason"][:5000])
        mlflow.set_tag("best_single_offer", ev.best_single_offer)
        if ev.values is not None:
            _log_table(ev.values, "policy_values.csv", job.tmp)
        if ev.qini_curves:
            mlflow.log_artifact(str(plots.qini_plot(ev.qini_curves, job.tmp)), "plots")
        final = trained.final
        version, alias = job.register(final, "next_best_offer")
        notes = (
            []
            if final.meta["has_control"]
            else ["offers carry no control arm: ranked by acceptance propensity x value (fallback)"]
        )
        return ModelResult("next_best_offer", version, alias, metrics, notes=[*notes, final.meta["policy_reason"]])


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
    if {"churn", "cltv"} & set(config.models):
        snapshot_cutoffs(as_of, start, config)
    feat_cfg = FeatureConfig(response_window_days=config.response_window_days, engine=config.engine)
    client = registry.configure(settings)
    registry.use_experiment()
    results: dict[str, ModelResult] = {}
    with tempfile.TemporaryDirectory() as tmpdir, feat_cfg, mlflow.start_run(run_name=f"train {as_of:%Y-%m-%d}") as run:
        tmp = Path(tmpdir)
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
        job = _Job(con, as_of, config, feat_cfg, client, tmp, report)
        if {"churn", "cltv"} & set(config.models):
            results.update(_train_churn_cltv(job))
        if "next_best_offer" in config.models:
            results["next_best_offer"] = res = _train_nbo(job)
            if res.skipped:
                mlflow.set_tag("next_best_offer_skipped", res.skipped)
                log.warning("next_best_offer skipped: %s", res.skipped)
        return TrainResult(run_id=run.info.run_id, as_of=as_of, models=results)
