"""The baselines a data scientist tries first, scored on the same holdout rows as the churn and CLTV models.

Churn (probabilities of churning within H days):

* ``rfm_logit``: a logistic regression on the standardized ``recency_days``, ``frequency_365d`` and
  ``monetary_365d`` (missing values take the training medians), fitted on the training snapshots' rows;
* ``bgnbd``: the probability of no purchase in the next H days under a BG/NBD fitted on the purchases before
  the holdout cut-off (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way"): churn as the contract
  defines it. ``1 - P(alive)`` would be a weaker score: BG/NBD calls every one-time buyer alive, so it ranks them
  as the safest although many never buy again.

CLTV (spend over the next H days):

* ``last_period``: the last 90 days' spend carried forward (``monetary_90d``, times H / 90);
* ``bgnbd_gg``: BG/NBD expected purchases times the Gamma-Gamma expected value per purchase, fitted on the
  purchases before the holdout cut-off (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves").

A holdout customer without a purchase before the cut-off is absent from the BG/NBD summary and gets the mean
BG/NBD prediction of the holdout customers who have one. :func:`compare` sets the model's metrics beside the
baselines' and says, per metric, where the model is ahead or behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.churn_blend import RFM
from training.btyd import BTYDModel, rfm_summary
from training.metrics import churn_metrics, cltv_metrics

#: Each baseline's name in metric keys (``baseline_<name>_<metric>``) and how a report calls it.
LABELS = {
    "rfm_logit": "RFM logistic regression",
    "bgnbd": "BG/NBD P(no purchase in H)",
    "last_period": "last-period spend (monetary_90d)",
    "bgnbd_gg": "BG/NBD + Gamma-Gamma",
}
#: Metrics compared with the baselines and whether higher is better (total spend error: closer to 0 is better).
CHURN_METRICS = {"roc_auc": True, "pr_auc": True, "brier": False, "log_loss": False, "ece": False}
CLTV_METRICS = {"normalized_gini": True, "spearman": True, "mae": False, "total_spend_error": False}


@dataclass(frozen=True)
class BTYDAtCut:
    """A BG/NBD + Gamma-Gamma fitted on the purchases before a cut-off, with the summary it was fitted on.

    Attributes:
        model: The fitted model.
        summary: :func:`training.btyd.rfm_summary` at the cut-off, indexed by customer id (str).
    """

    model: BTYDModel
    summary: pd.DataFrame

    @classmethod
    def fit(cls, transactions: pd.DataFrame, cut: datetime) -> BTYDAtCut:
        """Fit on ``transactions`` (``customer_id``, ``ts``, ``amount``) before ``cut``.

        Raises:
            ValueError: No purchase before ``cut``, or either fit failed.
        """
        summary = rfm_summary(transactions, pd.Timestamp(cut))
        summary.index = summary.index.astype(str)
        return cls(BTYDModel().fit(summary), summary)

    def p_alive(self, ids: pd.Series) -> np.ndarray:
        """P(alive) per id (the mean for ids without a purchase before the cut-off)."""
        return _per_customer(self.model.p_alive(self.summary), ids)

    def no_purchase(self, ids: pd.Series, horizon_days: int) -> np.ndarray:
        """P(no purchase in the next ``horizon_days``) per id (the mean for ids without a purchase)."""
        return _per_customer(self.model.p_no_purchase(self.summary, horizon_days), ids)

    def spend(self, ids: pd.Series, horizon_days: int) -> np.ndarray:
        """Expected spend over the next ``horizon_days`` per id (the mean for ids without a purchase)."""
        return _per_customer(self.model.predict_spend(self.summary, horizon_days), ids)


def _per_customer(values: pd.Series, ids: pd.Series) -> np.ndarray:
    out = ids.astype(str).map(values)
    return out.fillna(float(out.mean()) if out.notna().any() else 0.0).to_numpy(float)


def rfm_logit(train: pd.DataFrame, hold: pd.DataFrame, seed: int) -> np.ndarray:
    """Churn probabilities of the RFM logistic regression fitted on ``train`` (``churned``), for ``hold``'s rows."""
    cols = list(RFM)
    medians = train[cols].median().fillna(0.0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    model.fit(train[cols].fillna(medians).to_numpy(float), train.churned.to_numpy(int))
    return model.predict_proba(hold[cols].fillna(medians).to_numpy(float))[:, 1]


def churn_baselines(
    train: pd.DataFrame, hold: pd.DataFrame, btyd: BTYDAtCut | None, horizon_days: int, seed: int
) -> dict[str, np.ndarray]:
    """Each churn baseline's probabilities for ``hold``'s rows (``bgnbd`` only with a fitted BG/NBD)."""
    out = {"rfm_logit": rfm_logit(train, hold, seed)}
    if btyd is not None:
        out["bgnbd"] = btyd.no_purchase(hold.customer_id, horizon_days)
    return out


def cltv_baselines(hold: pd.DataFrame, btyd: BTYDAtCut | None, horizon_days: int) -> dict[str, np.ndarray]:
    """Each CLTV baseline's spend over ``horizon_days`` for ``hold``'s rows (``bgnbd_gg`` only with a BG/NBD)."""
    last = hold.monetary_90d.fillna(0.0).clip(lower=0.0).to_numpy(float) * (horizon_days / 90.0)
    out = {"last_period": last}
    if btyd is not None:
        out["bgnbd_gg"] = btyd.spend(hold.customer_id, horizon_days)
    return out


@dataclass(frozen=True)
class Comparison:
    """The model's holdout metrics beside each baseline's.

    Attributes:
        table: One row per scorer (``model`` first, then the baselines by name), one column per metric.
        metrics: The baselines' metrics as MLflow keys, ``baseline_<name>_<metric>``.
        lines: Per baseline, a sentence: its metrics and where the model is ahead, behind and level.
    """

    table: pd.DataFrame
    metrics: dict[str, float]
    lines: list[str]

    @property
    def verdict(self) -> str:
        """Every baseline's sentence in one line."""
        return " | ".join(self.lines)


def compare(model: dict[str, float], baselines: dict[str, dict[str, float]], better: dict[str, bool]) -> Comparison:
    """Set ``model``'s metrics beside each baseline's on the metrics in ``better`` (True: higher is better).

    A metric named ``total_spend_error`` is compared by its distance from 0.
    """
    rows = {"model": {m: model[m] for m in better}}
    rows |= {name: {m: values[m] for m in better} for name, values in baselines.items()}
    metrics = {
        f"baseline_{name}_{m}": float(v) for name, values in rows.items() if name != "model" for m, v in values.items()
    }
    lines: list[str] = []
    for name, values in baselines.items():
        ahead, lost, level = [], [], []
        for m, higher in better.items():
            mine, theirs = _oriented(m, model[m]), _oriented(m, values[m])
            if np.isnan(mine) or np.isnan(theirs):
                continue
            if mine == theirs:
                level.append(m)
            elif (mine > theirs) == higher:
                ahead.append(m)
            else:
                lost.append(m)
        figures = ", ".join(f"{m}={values[m]:.4g}" for m in better)
        verdict = f"the model is ahead on {', '.join(ahead) or 'nothing'}"
        verdict += f", behind on {', '.join(lost)}" if lost else ""
        verdict += f", level on {', '.join(level)}" if level else ""
        lines.append(f"{name} on the holdout: {figures}; {verdict}")
    return Comparison(pd.DataFrame(rows).T, metrics, lines)


def _oriented(metric: str, value: float) -> float:
    return abs(value) if metric == "total_spend_error" else float(value)


def compare_churn(y: np.ndarray, model: dict[str, float], baselines: dict[str, np.ndarray]) -> Comparison:
    """The churn model's holdout metrics (:func:`training.metrics.churn_metrics`) beside each churn baseline's."""
    return compare(model, {name: churn_metrics(y, p) for name, p in baselines.items()}, CHURN_METRICS)


def compare_cltv(actual: np.ndarray, model: dict[str, float], baselines: dict[str, np.ndarray]) -> Comparison:
    """The CLTV model's holdout spend metrics (:func:`training.metrics.cltv_metrics`) beside each CLTV baseline's."""
    return compare(model, {name: cltv_metrics(actual, s) for name, s in baselines.items()}, CLTV_METRICS)
