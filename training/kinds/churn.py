"""Training the churn kind: a booster blended with an RFM regression, calibrated out of time, scored on the holdout."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd

from features.btyd_inputs import no_purchase_logit
from features.churn_blend import BLEND_INPUTS, blend_logits, blend_probability, logit
from features.kinds import CHURN
from features.kinds.churn import ChurnBundle, ChurnMeta
from features.scoring import Encoder
from training import btyd_inputs, churn_model, plots
from training.backtest import History, plan_for, year_ago_snapshots
from training.baselines import churn_baselines, compare_churn
from training.calibration import reliability_table
from training.config import TrainConfig
from training.kinds.base import (
    Job,
    ModelResult,
    Trainer,
    TrainingDataError,
    fit_booster,
    log_comparison,
    log_table,
    log_trees,
    xgb_params,
)
from training.metrics import churn_metrics

log = logging.getLogger(__name__)


def fit_churn(
    frame: pd.DataFrame, config: TrainConfig, encoder: Encoder, history: History | None = None
) -> ChurnBundle:
    """Fit the churn booster and an RFM logistic regression, blend and calibrate them out of time.

    The booster reads each customer's BG/NBD P(alive) and expected orders beside the feature table
    (:func:`training.btyd_inputs.fit_bgnbd`): a parametric summary of the purchase process that shallow trees
    would otherwise have to piece together from frequency, recency and age. Booster and regression are fitted on
    all but the newest snapshot of ``frame``; the newest chooses the number of trees (early stopping) and fits the
    blend of their logits and BG/NBD's P(no purchase over H) (:mod:`training.churn_model`; the booster's logit as
    a booster fitted a horizon before the newest snapshot gives it), whose intercept is then moved to the mean
    churn rate of all snapshots and, where ``history`` reaches a year back, shifted by how far the same fit a year
    earlier missed its own target's churn rate (:func:`churn_backtest`).
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
    # The BG/NBD inputs are fitted like the booster, without the newest snapshot (it validates and blends).
    meta = ChurnMeta(
        horizon_days=config.horizon_days, bgnbd=btyd_inputs.fit_bgnbd(x[fit_mask], encoder.columns, config.horizon_days)
    )
    shell = ChurnBundle(kind=CHURN.name, meta=meta, encoder=encoder, boosters={})
    xb = shell.inputs(x)
    monotone = "(" + ",".join("1" if c == "recency_days" else "0" for c in shell.input_columns) + ")"
    params = {**xgb_params(config, "binary:logistic"), "monotone_constraints": monotone}
    choice = churn_model.choose_depth(
        params, xb, y, frame.snapshot.to_numpy(), config.horizon_days, config.xgb.n_estimators
    )
    if choice.depth is not None:
        config = config.model_copy(update={"xgb": config.xgb.model_copy(update={"max_depth": choice.depth})})
    if len(snaps) > 1:
        # Fitted without the newest snapshot, which chooses the number of trees and then fits the blend.
        booster = fit_booster(xb, y, config, "binary:logistic", valid=cal_mask, refit=False, monotone=monotone)
    else:
        booster = fit_booster(xb, y, config, "binary:logistic", monotone=monotone)
    cols = encoder.columns
    # Booster and regression are not refitted with the newest snapshot: a refit would move their score levels
    # (the newest snapshot's churn rate enters them) and the blend, fitted on the old levels, would double count.
    rfm = churn_model.fit_rfm(x[fit_mask], y[fit_mask], cols)
    raw_cal = booster.inplace_predict(xb[cal_mask])
    no_purchase, fill = None, 0.0
    if meta.bgnbd is not None:
        no_purchase = no_purchase_logit(x[cal_mask], cols, meta.bgnbd)
        fill = float(np.nanmean(no_purchase)) if np.isfinite(no_purchase).any() else 0.0
    # The weights read the booster a horizon away from its labels, as it is used (churn_model.DepthChoice).
    raw_far = raw_cal if choice.newest is None else choice.newest
    weights, intercept = churn_model.fit_blend(
        blend_logits(raw_far, x[cal_mask], cols, rfm, no_purchase, fill), y[cal_mask]
    )
    rate_cal, rate_all = float(y[cal_mask].mean()), float(y.mean())
    fitted = {"rfm": rfm, "weights": weights, "intercept": intercept, "no_purchase_fill": fill}
    z_cal = logit(blend_probability(raw_cal, x[cal_mask], cols, fitted, no_purchase))
    blend = {
        **fitted,
        "intercept": intercept + churn_model.shift_to_rate(z_cal, rate_all),
        "calibration_rate": rate_cal,
        "target_rate": rate_all,
        "note": (
            f"logistic blend of the booster's logit, an RFM logistic regression's"
            f"{' and BG/NBD P(no purchase)' if no_purchase is not None else ''}, fitted on the snapshot at "
            f"{pd.Timestamp(snaps[-1]):%Y-%m-%d} (churn rate {rate_cal:.4f})"
            f"{'' if choice.newest is None else ' with the booster fitted a horizon before it'}, intercept moved "
            f"to the mean churn rate of the {len(snaps)} training snapshots ({rate_all:.4f})"
        ),
    }
    blend["note"] += f"; {choice.note}"
    if not any(weights):
        blend["note"] += "; no signal on the calibration snapshot (likelihood-ratio test): every customer gets the rate"
    if meta.bgnbd is None:
        blend["note"] += "; no BG/NBD inputs (no purchase history or the fit failed)"
    shift, shift_note = churn_backtest(frame, config, encoder, history)
    blend["intercept"] += shift
    blend["season_shift"] = shift
    blend["note"] += f"; {shift_note}"
    meta.blend = blend
    return ChurnBundle(kind=CHURN.name, meta=meta, encoder=encoder, boosters={"main": booster})


def churn_backtest(
    frame: pd.DataFrame, config: TrainConfig, encoder: Encoder, history: History | None
) -> tuple[float, str]:
    """The logit shift from the same fit a year earlier (:func:`training.churn_model.backtest_shift`), 0 without one."""
    plan, why = plan_for(frame, config.horizon_days, history)
    if plan is None or history is None:
        return 0.0, why

    def fit_predict(train: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
        return fit_churn(train, config, encoder).churn_probability(encoder.encode_frame(target))

    snapshots, why = year_ago_snapshots(plan, history)
    if snapshots is None:
        return 0.0, why
    try:
        shift, why = churn_model.backtest_shift(plan, snapshots, fit_predict)
    except TrainingDataError as exc:
        return 0.0, f"no back-test a year earlier: {exc}"
    return (0.0 if shift is None else shift), why


class ChurnTrainer(Trainer):
    """Churn: fitted on the training snapshots, scored on the holdout snapshot, refitted on all of them."""

    kind = CHURN
    uses_snapshots = True

    def train(self, job: Job) -> ModelResult:
        """Fit, evaluate (discrimination, calibration), refit and register."""
        snaps, config, tmp = job.snapshots, job.config, job.tmp
        encoder, train, hold = snaps.encoder, snaps.train, snaps.hold
        with mlflow.start_run(run_name=self.kind.name, nested=True):
            mlflow.log_params({**snaps.params, **{f"xgb_{k}": v for k, v in config.xgb.model_dump().items()}})
            mlflow.log_metrics({"rows_train": len(train), "rows_holdout": len(hold)})
            eval_bundle = fit_churn(train, config, encoder, job.history)
            p = eval_bundle.churn_probability(encoder.encode_frame(hold))
            y = hold.churned.to_numpy()
            if y.min() == y.max():
                raise TrainingDataError("the holdout snapshot has no churners (or only churners): cannot evaluate")
            metrics = churn_metrics(y, p)
            mlflow.log_metrics(metrics)
            vs = compare_churn(
                y, metrics, churn_baselines(train, hold, job.holdout_btyd, config.horizon_days, config.seed)
            )
            log_comparison(vs, tmp)
            log_table(reliability_table(y, p), "reliability_table.csv", tmp)
            mlflow.set_tag("churn_calibration", (eval_bundle.meta.blend or {})["note"][:5000])
            mlflow.log_metric("season_shift", (eval_bundle.meta.blend or {}).get("season_shift", 0.0))
            weights = (eval_bundle.meta.blend or {}).get("weights", [])
            mlflow.log_metrics({f"blend_weight_{name}": w for name, w in zip(BLEND_INPUTS, weights, strict=False)})
            for path in plots.churn_plots(y, p, tmp):
                mlflow.log_artifact(str(path), "plots")
            job.log_holdout_bundle(eval_bundle, snaps.holdout_cut)
            final = fit_churn(snaps.frame, config, encoder, job.history)
            log_trees(final)
            gains = final.boosters["main"].get_score(importance_type="total_gain")
            names = final.input_columns
            mlflow.log_artifact(str(plots.importance_plot(names, gains, tmp, self.kind.name)), "plots")
            version, alias = job.register(final)
            return ModelResult(self.kind.name, version, alias, metrics, notes=vs.lines)
