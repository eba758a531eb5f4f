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


#: Names of the blend's inputs, in the order of its weights (:func:`blend_logits`); logged with the weights.
BLEND_INPUTS = ("booster", "rfm_logit", "bgnbd_no_purchase")


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


def blend_logits(
    raw: np.ndarray,
    x: np.ndarray,
    columns: Sequence[str],
    rfm: Mapping[str, Any],
    no_purchase: np.ndarray | None = None,
    fill: float = 0.0,
) -> np.ndarray:
    """The blend's inputs, one column each: the booster's logit, the RFM regression's and, given, BG/NBD's.

    Args:
        raw: The booster's probabilities.
        x: Encoded rows.
        columns: Their names.
        rfm: The RFM regression's parameters.
        no_purchase: BG/NBD's churn logit (:func:`features.btyd_inputs.no_purchase_logit`); NaN (a customer
            without a purchase) reads ``fill``.
        fill: The value for a NaN of ``no_purchase``.
    """
    cols = [logit(raw), rfm_logit(x, columns, rfm)]
    if no_purchase is not None:
        cols.append(np.where(np.isnan(no_purchase), fill, np.asarray(no_purchase, dtype=np.float64)))
    return np.column_stack(cols)


def blend_probability(
    raw: np.ndarray,
    x: np.ndarray,
    columns: Sequence[str],
    blend: Mapping[str, Any],
    no_purchase: np.ndarray | None = None,
) -> np.ndarray:
    """Churn probability from the booster's probability ``raw`` and the encoded rows ``x``.

    A blend with three weights also reads BG/NBD's churn logit ``no_purchase`` (NaN reads ``no_purchase_fill``).
    """
    w = np.asarray(blend["weights"], dtype=np.float64)
    if len(w) > 2 and no_purchase is None:
        raise ValueError("this churn blend reads BG/NBD's churn logit: pass no_purchase")
    z = blend_logits(
        raw, x, columns, blend["rfm"], no_purchase if len(w) > 2 else None, blend.get("no_purchase_fill", 0.0)
    )
    return 1.0 / (1.0 + np.exp(-(z @ w + float(blend["intercept"]))))
