"""Training the CLTV kind: spend over the horizon (Tweedie), value over the CLTV horizon, BG/NBD for the activity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from features.kinds import CLTV
from features.kinds.cltv import VALUE_BOOSTER, CltvBundle
from features.scoring import Encoder
from training import plots
from training.btyd import BTYDModel, bgnbd_metadata, rfm_summary
from training.config import TrainConfig
from training.kinds.base import Job, ModelResult, Trainer, fit_booster, log_table, log_trees
from training.metrics import cltv_metrics, decile_table


def fit_cltv(frame: pd.DataFrame, config: TrainConfig, encoder: Encoder, cltv_scale: float, method: str) -> CltvBundle:
    """Fit the spend-over-H booster (Tweedie); long-horizon value either by its own booster or by a scale."""
    x = encoder.encode_frame(frame)
    newest = (frame.snapshot == frame.snapshot.max()).to_numpy()
    y_spend = frame.spend_h.clip(lower=0).to_numpy()
    spend = fit_booster(x, y_spend, config, "reg:tweedie", valid=newest)
    scale, scale_note = spend_total_scale(x, y_spend, newest, config)
    boosters = {"main": spend}
    if method == "model":
        observed = frame.cltv_observed.to_numpy(dtype=bool)
        long_frame = frame[observed]
        boosters[VALUE_BOOSTER] = fit_booster(
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
        "cltv_scale": cltv_scale,
        "spend_scale": scale,
        "spend_scale_note": scale_note,
    }
    return CltvBundle(kind=CLTV.name, meta=meta, encoder=encoder, boosters=boosters)  # type: ignore[arg-type]


def spend_total_scale(x: np.ndarray, y: np.ndarray, newest: np.ndarray, config: TrainConfig) -> tuple[float, str]:
    """Factor that makes the predicted total spend match the truth on the newest snapshot, out of sample.

    A Tweedie booster matches the total of the rows it was fitted on, but the spend level moves between snapshots
    (trend, seasonality, a shrinking active base): fitted without the newest snapshot and scored on it, its total is
    off by the shift from the older snapshots to the newest. That ratio, clipped to [0.5, 2] so one odd snapshot
    cannot run away with it, scales every prediction. With a single snapshot there is nothing out of sample: 1.
    """
    if not 0 < int(newest.sum()) < len(newest):
        return 1.0, "no out-of-sample snapshot: spend not rescaled"
    booster = fit_booster(x, y, config, "reg:tweedie", valid=newest, refit=False)
    predicted = float(np.maximum(booster.inplace_predict(x[newest]), 0.0).sum())
    actual = float(y[newest].sum())
    if predicted <= 0 or actual <= 0:
        return 1.0, "no spend on the newest snapshot: spend not rescaled"
    scale = float(np.clip(actual / predicted, 0.5, 2.0))
    note = (
        f"spend predictions x {scale:.4f}: a model fitted without the newest training snapshot predicted "
        f"{predicted:.6g} in total on it, where {actual:.6g} was spent"
    )
    return scale, note


def btyd_scale(transactions: pd.DataFrame, as_of: datetime, config: TrainConfig) -> tuple[float, BTYDModel, Any]:
    """Ratio of BG/NBD + Gamma-Gamma value over the CLTV horizon to value over H, fitted on data before T."""
    summary = rfm_summary(transactions, pd.Timestamp(as_of))
    model = BTYDModel().fit(summary)
    short = float(np.sum(model.predict_spend(summary, config.horizon_days)))
    long = float(np.sum(model.predict_clv(summary, config.cltv_horizon_days)))
    return (long / short if short > 0 else config.cltv_horizon_days / config.horizon_days), model, summary


class CltvTrainer(Trainer):
    """CLTV: fitted on the training snapshots, scored on the holdout's spend, refitted with the BG/NBD of all data."""

    kind = CLTV
    uses_snapshots = True

    def train(self, job: Job) -> ModelResult:
        """Fit, evaluate (spend over the horizon), refit with the BG/NBD answers' parameters and register."""
        snaps, config, tmp, as_of = job.snapshots, job.config, job.tmp, job.as_of
        encoder, train, hold, frame, holdout_cut = (
            snaps.encoder,
            snaps.train,
            snaps.hold,
            snaps.frame,
            snaps.holdout_cut,
        )
        with mlflow.start_run(run_name=self.kind.name, nested=True):
            mlflow.log_params(snaps.params | {"cltv_horizon_days": config.cltv_horizon_days})
            tx = job.con.execute(
                f"SELECT customer_id, ts, amount FROM transactions WHERE ts < TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
            ).df()
            observed = frame.cltv_observed.astype(bool)
            method = "model" if observed.sum() >= config.min_customers * 2 else "btyd_ratio"
            scale, _, _ = btyd_scale(tx[tx.ts < pd.Timestamp(holdout_cut)], holdout_cut, config)
            eval_bundle = fit_cltv(train, config, encoder, scale, method)
            spend, _ = eval_bundle.spend(encoder.encode_frame(hold))
            metrics = cltv_metrics(hold.spend_h.to_numpy(), spend)
            mlflow.log_metrics(metrics)
            mlflow.set_tag("spend_scale_note", (eval_bundle.meta.spend_scale_note or "")[:5000])
            deciles = decile_table(hold.spend_h.to_numpy(), spend)
            log_table(deciles, "cltv_deciles.csv", tmp)
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
            final = fit_cltv(frame, config, encoder, scale_final, method)
            # What the per-customer answers need (features.kinds.cltv.CltvBundle.cltv_answers): BG/NBD and a fallback.
            final.meta.bgnbd = bgnbd
            aov = frame.avg_order_value[frame.avg_order_value > 0]
            final.meta.mean_order_value = float(aov.mean()) if len(aov) else None
            mlflow.log_param("spend_scale", round(float(final.meta.spend_scale), 6))
            log_trees(final)
            version, alias = job.register(final)
            return ModelResult(self.kind.name, version, alias, metrics, notes=[note])
