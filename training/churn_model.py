"""Churn: a gradient-boosted model stacked with an RFM logistic regression, calibrated out of time.

Why a blend: on real transaction logs a three-feature logistic regression on recency, frequency and monetary
value (log scale) is hard to beat; the booster adds what the other features know. The two logits are combined by
a logistic regression fitted on the newest training snapshot (which neither model was fitted on), which is
also the calibration (Platt scaling on two inputs). The churn rate moves between snapshots (seasonality), and the
newest snapshot's rate is a noisy forecast of the next one's, so the blend's intercept is shifted (a prior-shift
correction) to the mean churn rate over all training snapshots. Everything scoring needs is plain numbers in
the bundle metadata (``meta["blend"]``), applied by :mod:`features.churn_blend` when scoring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from features.churn_blend import RFM, logit, rfm_logit, rfm_matrix


def fit_rfm(x: np.ndarray, y: np.ndarray, columns: list[str]) -> dict[str, Any]:
    """Standardized logistic regression on log RFM; returns its parameters as plain numbers."""
    idx = [columns.index(c) for c in RFM]
    medians = [float(v) if np.isfinite(v) else 0.0 for v in np.nanmedian(x[:, idx].astype(np.float64), axis=0)]
    z = rfm_matrix(x, columns, medians)
    mean, scale = z.mean(axis=0), z.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    lr = LogisticRegression(max_iter=1000).fit((z - mean) / scale, y)
    return {
        "medians": medians,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": lr.coef_[0].tolist(),
        "intercept": float(lr.intercept_[0]),
    }


def fit_blend(
    raw_cal: np.ndarray, x_cal: np.ndarray, y_cal: np.ndarray, rfm_old: dict[str, Any], columns: list[str]
) -> tuple[list[float], float]:
    """Weights of the two logits and the intercept, fitted on the calibration snapshot."""
    z = np.column_stack([logit(raw_cal), rfm_logit(x_cal, columns, rfm_old)])
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(z, y_cal)
    return lr.coef_[0].tolist(), float(lr.intercept_[0])


def prior_shift(intercept: float, rate_from: float, rate_to: float) -> float:
    """Move a logistic intercept so that a model calibrated at churn rate ``rate_from`` predicts at ``rate_to``."""
    lo, hi = 1e-4, 1 - 1e-4
    a, b = min(max(rate_from, lo), hi), min(max(rate_to, lo), hi)
    return intercept + float(np.log(b / (1 - b)) - np.log(a / (1 - a)))
