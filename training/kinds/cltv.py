"""Training the CLTV kind: spend over the horizon (Tweedie), value over the CLTV horizon, BG/NBD for the activity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

from features.btyd_inputs import GAMMA_GAMMA
from features.kinds import CLTV
from features.kinds.cltv import VALUE_BOOSTER, CltvBundle, CltvMeta
from features.scoring import Encoder
from features.spend_blend import SpendBlend
from training import btyd_inputs, cltv_model, plots
from training.backtest import History
from training.baselines import BTYDAtCut, cltv_baselines, compare_cltv
from training.btyd import BTYDModel, bgnbd_metadata
from training.config import TrainConfig
from training.kinds.base import Job, ModelResult, Trainer, fit_booster, log_comparison, log_table, log_trees
from training.metrics import cltv_metrics, decile_table


def fit_spend(frame: pd.DataFrame, config: TrainConfig, encoder: Encoder) -> CltvBundle:
    """The spend-over-H model, balanced: a Tweedie booster on the features and the BTYD inputs, blended.

    The booster reads each customer's BG/NBD P(alive), expected orders and BG/NBD + Gamma-Gamma expected spend
    (:mod:`features.btyd_inputs`, parameters fitted on ``frame``) beside the feature table; the number of trees is
    chosen on the newest snapshot. Its spend is blended with BG/NBD + Gamma-Gamma's (:func:`_spend_blend`) and
    multiplied by the balance (:func:`training.cltv_model.balance`), so their total over ``frame`` is the rows' own.

    Returns:
        A bundle with the ``main`` booster and the blend; its ``spend_scale`` is the balance.
    """
    x = encoder.encode_frame(frame)
    params = btyd_inputs.fit_inputs(x, encoder.columns, config.horizon_days, spend=True)
    shell = CltvBundle(kind=CLTV.name, meta=CltvMeta(btyd_inputs=params), encoder=encoder, boosters={})
    xb = shell.inputs(x)
    newest = (frame.snapshot == frame.snapshot.max()).to_numpy()
    y_spend = frame.spend_h.clip(lower=0).to_numpy()
    booster = fit_booster(xb, y_spend, config, "reg:tweedie", valid=newest)
    blend, blend_note = _spend_blend(frame, xb, y_spend, shell.btyd_spend(xb), booster, config)
    meta = shell.meta.model_copy(update={"spend_blend": blend})
    unbalanced = CltvBundle(kind=CLTV.name, meta=meta, encoder=encoder, boosters={"main": booster})
    factor, note = cltv_model.balance(y_spend, unbalanced.unscaled_spend(xb))
    meta = CltvMeta(
        horizon_days=config.horizon_days,
        btyd_inputs=params,
        spend_blend=blend,
        spend_scale=factor,
        spend_balance=factor,
        spend_scale_note=f"{blend_note}; {note}"
        + ("" if params else "; no BTYD inputs (no purchase history or the BG/NBD fit failed)")
        + ("" if not params or GAMMA_GAMMA in params else "; no expected-spend input (the Gamma-Gamma fit failed)"),
    )
    return CltvBundle(kind=CLTV.name, meta=meta, encoder=encoder, boosters={"main": booster})


def _spend_blend(
    frame: pd.DataFrame,
    xb: np.ndarray,
    y_spend: np.ndarray,
    btyd_spend: np.ndarray | None,
    booster: xgb.Booster,
    config: TrainConfig,
) -> tuple[SpendBlend | None, str]:
    """The blend with BG/NBD + Gamma-Gamma (:func:`training.cltv_model.fit_spend_blend`) and a sentence saying so.

    The weights are fitted on the newest snapshot, from a booster with ``booster``'s trees fitted on the snapshots
    at least H older than it; ``None`` without the BTYD spend input or such snapshots.
    """
    if btyd_spend is None:
        return None, "no blend with BG/NBD + Gamma-Gamma (no expected-spend input)"
    newest = pd.Timestamp(frame.snapshot.max())
    newest_rows = (frame.snapshot == newest).to_numpy()
    older = (frame.snapshot <= newest - pd.Timedelta(days=config.horizon_days)).to_numpy()
    if not older.any():
        return None, f"no blend with BG/NBD + Gamma-Gamma (no training snapshot {config.horizon_days} days older)"
    earlier = fit_booster(xb[older], y_spend[older], config, "reg:tweedie", rounds=booster.num_boosted_rounds())
    blend = cltv_model.fit_spend_blend(
        np.maximum(earlier.inplace_predict(xb[newest_rows]), 0.0), btyd_spend[newest_rows], y_spend[newest_rows]
    )
    return blend, (
        f"spend = exp({blend.intercept:.3f} + {blend.booster_weight:.3f} log(booster + {blend.booster_floor:.3g}) + "
        f"{blend.btyd_weight:.3f} log(BG/NBD + Gamma-Gamma + {blend.btyd_floor:.3g})), fitted on the snapshot at "
        f"{newest:%Y-%m-%d} with a booster fitted on the {int(older.sum())} rows of the snapshots "
        f"{config.horizon_days}+ days older"
    )


def spend_total_scale(
    frame: pd.DataFrame, config: TrainConfig, encoder: Encoder, history: History | None
) -> cltv_model.SpendLevel:
    """Seasonal factor on the spend predictions of a fit on ``frame``: a back-test a year back.

    See :mod:`training.cltv_model`; the back-test fits as :func:`fit_spend` does, balance included.
    """

    def fit_predict(train: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
        return fit_spend(train, config, encoder).spend(encoder.encode_frame(target))[0]

    return cltv_model.spend_level(frame, config.horizon_days, history, fit_predict)


def fit_cltv(
    frame: pd.DataFrame,
    config: TrainConfig,
    encoder: Encoder,
    cltv_scale: float,
    method: str,
    history: History | None = None,
) -> CltvBundle:
    """Fit the spend-over-H model (:func:`fit_spend`); long-horizon value either by its own booster or by a scale.

    ``history`` (where the snapshots a year earlier come from) sets the spend level for the target window's
    season (:func:`spend_total_scale`); without it the level is the training windows'.
    """
    spend = fit_spend(frame, config, encoder)
    level = spend_total_scale(frame, config, encoder, history)
    boosters = dict(spend.boosters)
    if method == "model":
        observed = frame.cltv_observed.to_numpy(dtype=bool)
        long_frame = frame[observed]
        boosters[VALUE_BOOSTER] = fit_booster(
            spend.inputs(encoder.encode_frame(long_frame)),
            long_frame.spend_cltv.clip(lower=0).to_numpy(),
            config,
            "reg:tweedie",
            valid=(long_frame.snapshot == long_frame.snapshot.max()).to_numpy(),
        )
    meta = spend.meta.model_copy(
        update={
            "cltv_horizon_days": config.cltv_horizon_days,
            "cltv_method": method,
            # Value over the CLTV horizon is ``spend x cltv_scale`` (btyd_ratio): a year holds every season, so the
            # seasonal factor of the H-day spend is taken out of it again.
            "cltv_scale": cltv_scale / level.scale,
            "spend_scale": spend.meta.spend_balance * level.scale,
            "spend_season": level.scale,
            "spend_scale_note": f"spend predictions x {spend.meta.spend_balance * level.scale:.4f}: "
            f"{spend.meta.spend_scale_note}; {level.note}",
        }
    )
    return CltvBundle(kind=CLTV.name, meta=meta, encoder=encoder, boosters=boosters)


def blend_metrics(meta: CltvMeta) -> dict[str, float]:
    """The spend blend's numbers as run metrics (none without a blend: the note says why)."""
    blend = meta.spend_blend
    if blend is None:
        return {}
    return {
        "spend_blend_intercept": blend.intercept,
        "spend_blend_weight_booster": blend.booster_weight,
        "spend_blend_weight_btyd": blend.btyd_weight,
    }


def btyd_ratio(fitted: BTYDAtCut | None, config: TrainConfig) -> float:
    """Ratio of BG/NBD + Gamma-Gamma value over the CLTV horizon to value over H (the horizons' ratio without it)."""
    if fitted is None:
        return config.cltv_horizon_days / config.horizon_days
    short = float(np.sum(fitted.model.predict_spend(fitted.summary, config.horizon_days)))
    long = float(np.sum(fitted.model.predict_clv(fitted.summary, config.cltv_horizon_days)))
    return long / short if short > 0 else config.cltv_horizon_days / config.horizon_days


def btyd_scale(transactions: pd.DataFrame, as_of: datetime, config: TrainConfig) -> tuple[float, BTYDModel, Any]:
    """:func:`btyd_ratio` of a BG/NBD + Gamma-Gamma fitted on ``transactions`` before ``as_of``; model; summary."""
    fitted = BTYDAtCut.fit(transactions, as_of)
    return btyd_ratio(fitted, config), fitted.model, fitted.summary


class CltvTrainer(Trainer):
    """CLTV: fitted on the training snapshots, scored on the holdout's spend, refitted with the BG/NBD of all data."""

    kind = CLTV
    uses_snapshots = True

    def train(self, job: Job) -> ModelResult:
        """Fit, evaluate (spend over the horizon), refit with the BG/NBD answers' parameters and register."""
        snaps, config, tmp, as_of = job.snapshots, job.config, job.tmp, job.as_of
        encoder, train, hold, frame = snaps.encoder, snaps.train, snaps.hold, snaps.frame
        with mlflow.start_run(run_name=self.kind.name, nested=True):
            mlflow.log_params(snaps.params | {"cltv_horizon_days": config.cltv_horizon_days})
            tx = job.transactions
            observed = frame.cltv_observed.astype(bool)
            method = "model" if observed.sum() >= config.min_customers * 2 else "btyd_ratio"
            scale = btyd_ratio(job.holdout_btyd, config)
            eval_bundle = fit_cltv(train, config, encoder, scale, method, job.history)
            spend, _ = eval_bundle.spend(encoder.encode_frame(hold))
            actual = hold.spend_h.to_numpy(float)
            metrics = cltv_metrics(actual, spend)
            mlflow.log_metrics(metrics | blend_metrics(eval_bundle.meta))
            vs = compare_cltv(actual, metrics, cltv_baselines(hold, job.holdout_btyd, config.horizon_days))
            log_comparison(vs, tmp)
            mlflow.set_tag("spend_scale_note", (eval_bundle.meta.spend_scale_note or "")[:5000])
            deciles = decile_table(hold.spend_h.to_numpy(), spend)
            log_table(deciles, "cltv_deciles.csv", tmp)
            mlflow.log_artifact(str(plots.decile_plot(deciles, tmp)), "plots")
            job.log_holdout_bundle(eval_bundle, snaps.holdout_cut)
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
            final = fit_cltv(frame, config, encoder, scale_final, method, job.history)
            # What the per-customer answers need (features.kinds.cltv.CltvBundle.cltv_answers): BG/NBD and a fallback.
            final.meta.bgnbd = bgnbd
            aov = frame.avg_order_value[frame.avg_order_value > 0]
            final.meta.mean_order_value = float(aov.mean()) if len(aov) else None
            # The registered fit's level and blend (the metrics hold the evaluated fit's).
            mlflow.log_params(
                {k: round(float(getattr(final.meta, k)), 6) for k in ("spend_scale", "spend_balance", "spend_season")}
                | {k: round(v, 6) for k, v in blend_metrics(final.meta).items()}
            )
            mlflow.set_tag("registered_spend_scale_note", (final.meta.spend_scale_note or "")[:5000])
            log_trees(final)
            version, alias = job.register(final)
            return ModelResult(self.kind.name, version, alias, metrics, notes=[note, *vs.lines])
