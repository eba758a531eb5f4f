"""Training the next-best-offer kind: offer outcomes before T, an uplift policy, its value on the holdout."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import mlflow
import numpy as np
import pandas as pd

from features.kinds import NEXT_BEST_OFFER
from features.pipeline import FeatureConfig, build_features, build_offer_outcomes, data_start
from features.scoring import Encoder
from training import plots
from training.config import TrainConfig
from training.kinds.base import Job, ModelResult, Trainer, log_table, warn_dropped
from training.nbo import CURRENCY_TEXT, train_offer_policy


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


class OfferTrainer(Trainer):
    """Next best offer: skipped (said so) without enough offer outcomes; else the policy of :mod:`training.nbo`."""

    kind = NEXT_BEST_OFFER

    def train(self, job: Job) -> ModelResult:
        """Build the offer outcomes, split them (in time where there are two windows), fit, evaluate, register."""
        con, as_of, config, name = job.con, job.as_of, job.config, self.kind.name
        n_offers = con.execute("SELECT count(*) FROM offers").fetchall()[0][0]
        if n_offers == 0:
            return ModelResult(name, skipped="no offers table (or it is empty): nothing to learn offers from")
        frame = offer_frame(con, as_of, data_start(con), config, job.feat_cfg)
        if len(frame) < config.min_customers:
            return ModelResult(name, skipped=f"only {len(frame)} offer outcomes before {as_of:%Y-%m-%d}")
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
        warn_dropped(encoder)
        with mlflow.start_run(run_name=name, nested=True):
            mlflow.log_params({**job.params(), "holdout_split": split, "offer_rows": len(frame)})
            trained = train_offer_policy(frame, hold_mask, catalog, config, encoder)
            metrics, ev, final = trained.metrics, trained.evaluation, trained.final
            mlflow.log_metrics(metrics)
            meta = final.meta
            reason = meta.policy_reason or ""
            mlflow.set_tag("nbo_method", meta.method)
            mlflow.set_tag("nbo_policy", f"{meta.policy} ({meta.candidate}-learner)")
            mlflow.set_tag("nbo_policy_reason", reason[:5000])
            mlflow.set_tag("best_single_offer", ev.best_single_offer)
            mlflow.set_tag("nbo_value_saved", CURRENCY_TEXT[ev.currency])
            if ev.values is not None:
                log_table(ev.values, "policy_values.csv", job.tmp)
            if ev.alt_values is not None:
                log_table(ev.alt_values, f"policy_values_in_{ev.alt_currency}.csv", job.tmp)
            if ev.qini_curves:
                mlflow.log_artifact(str(plots.qini_plot(ev.qini_curves, job.tmp)), "plots")
            if split == "time":
                # The offer model fitted without the newest window: `target` evaluates its choices on that window.
                job.log_holdout_bundle(trained.eval_bundle, pd.Timestamp(snaps[-1]).to_pydatetime())
            version, alias = job.register(final)
            notes = (
                []
                if meta.has_control
                else ["offers carry no control arm: ranked by acceptance propensity x value (fallback)"]
            )
            return ModelResult(name, version, alias, metrics, notes=[*notes, reason])
