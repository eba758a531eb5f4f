"""Scoring arithmetic of the churn model, numpy only: the blend of the booster's and an RFM regression's logits.

Training (:mod:`training.churn_model`) fits the numbers stored in the bundle's metadata (``meta["blend"]``);
batch scoring and serving apply them here, so both compute the same probability. The booster's BG/NBD inputs
are :mod:`features.btyd_inputs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Features of the logistic regression, log1p-transformed (heavy-tailed counts and amounts).
RFM = ("recency_days", "frequency_365d", "monetary_365d")


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
