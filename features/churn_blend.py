"""Scoring arithmetic of the churn model, numpy only: the booster's BG/NBD inputs and the blend of logits.

Training (:mod:`training.churn_model`) fits the numbers stored in the bundle's metadata (``meta["blend"]``,
``meta["bgnbd"]``); batch scoring and serving apply them here, so both compute the same probability.

BG/NBD inputs: the booster reads, beside the feature table, each customer's P(alive) and expected orders over the
horizon under a BG/NBD model (Fader, Hardie & Lee 2005) fitted on the training snapshots. Both are functions of
the registry's ``bg_frequency``, ``bg_recency_days`` and ``bg_age_days`` (point-in-time like every feature) and
the fitted parameters, so they are computed at scoring time from the same encoded row, offline and online.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from features.btyd import BGParams, customer_answers

#: Features of the logistic regression, log1p-transformed (heavy-tailed counts and amounts).
RFM = ("recency_days", "frequency_365d", "monetary_365d")


#: The booster's inputs after the feature table's columns, computed from a fitted BG/NBD (:func:`bgnbd_inputs`).
BGNBD_INPUTS = ("bg_alive_logit", "bg_expected_orders_log1p")
#: What each of them means (reasons name them like features and show the value untransformed).
BGNBD_DESCRIPTIONS = {
    "bg_alive_logit": "Probability the customer is still active (BG/NBD)",
    "bg_expected_orders_log1p": "Expected purchase days over the horizon (BG/NBD)",
}
#: The registry features BG/NBD reads: repeat purchase days, first to last purchase day, first purchase day to T.
BGNBD_SUMMARY = ("bg_frequency", "bg_recency_days", "bg_age_days")


def bgnbd_inputs(x: np.ndarray, columns: Sequence[str], bgnbd: Mapping[str, Any]) -> np.ndarray:
    """Log-odds of P(alive) and log1p of the expected orders over the horizon per encoded row.

    P(alive) is taken on the log-odds scale (clipped to [1e-6, 1 - 1e-6]) because the booster's inputs are float32:
    on a business where BG/NBD sees almost no dropout every P(alive) lies within 1e-4 of 1 and float32 would merge
    them. A customer without a purchase is alive under BG/NBD (dropout happens only after a purchase); the
    expected orders are NaN for them (missing to the booster).

    Args:
        x: Encoded rows (the feature table's columns).
        columns: Their names.
        bgnbd: Fitted parameters (:meth:`features.btyd.BGParams.to_json`) and ``horizon_days``, the horizon of the
            expected orders (the churn horizon H).

    Returns:
        Two columns, in the order of :data:`BGNBD_INPUTS`, in the dtype of ``x``.
    """
    idx = [list(columns).index(c) for c in BGNBD_SUMMARY]
    summary = np.asarray(x[:, idx], dtype=np.float64)
    alive, orders = customer_answers(
        BGParams.from_json(bgnbd), float(bgnbd["horizon_days"]), summary[:, 0], summary[:, 1], summary[:, 2]
    )
    return np.column_stack([logit(np.nan_to_num(alive, nan=1.0)), np.log1p(orders)]).astype(x.dtype, copy=False)


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds, with probabilities kept inside [1e-6, 1 - 1e-6]."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def rfm_matrix(x: np.ndarray, columns: Sequence[str], medians: Sequence[float]) -> np.ndarray:
    """The logistic regression's inputs from encoded rows: log1p of the RFM columns, missing values as medians."""
    idx = [list(columns).index(c) for c in RFM]
    raw = np.asarray(x[:, idx], dtype=np.float64)
    raw = np.where(np.isnan(raw), np.asarray(medians, dtype=np.float64), raw)
    return np.log1p(np.clip(raw, 0.0, None))


def rfm_logit(x: np.ndarray, columns: Sequence[str], rfm: Mapping[str, Any]) -> np.ndarray:
    """The RFM logistic regression's logit for encoded rows."""
    z = (rfm_matrix(x, columns, rfm["medians"]) - np.asarray(rfm["mean"])) / np.asarray(rfm["scale"])
    return z @ np.asarray(rfm["coef"]) + float(rfm["intercept"])


def blend_probability(raw: np.ndarray, x: np.ndarray, columns: Sequence[str], blend: Mapping[str, Any]) -> np.ndarray:
    """Churn probability from the booster's probability ``raw`` and the encoded rows ``x``."""
    w = blend["weights"]
    z = w[0] * logit(raw) + w[1] * rfm_logit(x, columns, blend["rfm"]) + float(blend["intercept"])
    return 1.0 / (1.0 + np.exp(-z))
