"""Calibration checks: expected calibration error and the reliability table behind it.

A probability is calibrated when, among customers given about ``p``, a share of about ``p`` churn. The reliability
table groups the holdout into bins of predicted probability (equal counts, so every bin has enough customers to
read its rate) and sets the mean prediction of each bin beside its observed rate; the expected calibration error
is the count-weighted mean absolute gap between the two.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability and observed rate per bin of equal counts (sorted by the prediction).

    Args:
        y: Outcomes (0/1).
        p: Predicted probabilities.
        bins: Number of bins (fewer when there are fewer rows).

    Returns:
        One row per bin: ``customers``, ``p_low``, ``p_high``, ``mean_predicted``, ``observed_rate``, ``gap``.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError("y and p must be non-empty 1-D arrays of equal length")
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, y.size))
    rows = []
    for i, g in enumerate(groups, start=1):
        rows.append(
            {
                "bin": i,
                "customers": int(g.size),
                "p_low": float(p[g].min()),
                "p_high": float(p[g].max()),
                "mean_predicted": float(p[g].mean()),
                "observed_rate": float(y[g].mean()),
            }
        )
    table = pd.DataFrame(rows).set_index("bin")
    table["gap"] = table.mean_predicted - table.observed_rate
    return table


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean of ``|mean predicted - observed rate|`` over the bins of :func:`reliability_table`."""
    table = reliability_table(y, p, bins)
    return float(np.average(table.gap.abs(), weights=table.customers))
