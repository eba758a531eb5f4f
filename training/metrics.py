"""Holdout metrics for the churn and CLTV models (definitions in each docstring)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from training.calibration import expected_calibration_error


def lift_at(y: np.ndarray, score: np.ndarray, fraction: float = 0.1) -> float:
    """Churn rate among the top ``fraction`` by score divided by the overall churn rate."""
    n = max(1, int(round(len(y) * fraction)))
    top = np.argsort(-score, kind="stable")[:n]
    base = float(np.mean(y))
    return float(np.mean(y[top]) / base) if base > 0 else float("nan")


def churn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, log loss, Brier score, lift in the top 10% and expected calibration error of ``p``."""
    y = np.asarray(y, dtype=int)
    raw = np.asarray(p, dtype=float)
    p = np.clip(raw, 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "lift_at_10pct": lift_at(y, p, 0.1),
        "base_rate": float(y.mean()),
        "ece": expected_calibration_error(y, raw),
    }


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of ``actual`` ordered by ``predicted``, divided by the Gini of the perfect order (1 = perfect)."""

    def gini(a: np.ndarray, p: np.ndarray) -> float:
        order = np.lexsort((np.arange(len(p)), -p))
        a_sorted = a[order]
        total = a_sorted.sum()
        if total == 0:
            return 0.0
        cum = np.cumsum(a_sorted) / total
        return float(cum.sum() / len(a) - (len(a) + 1) / (2 * len(a)))

    actual = np.asarray(actual, dtype=float)
    perfect = gini(actual, actual)
    return gini(actual, np.asarray(predicted, dtype=float)) / perfect if perfect else float("nan")


def decile_table(actual: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Mean predicted and actual value per decile of the prediction (decile 1 = highest predicted)."""
    frame = pd.DataFrame({"actual": actual, "predicted": predicted})
    ranks = frame.predicted.rank(method="first", ascending=False)
    frame["decile"] = np.ceil(ranks / len(frame) * 10).clip(1, 10).astype(int)
    return frame.groupby("decile").agg(
        customers=("actual", "size"), predicted=("predicted", "mean"), actual=("actual", "mean")
    )


def cltv_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Normalized Gini, Spearman correlation, MAE and relative error of the total spend."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    total = actual.sum()
    return {
        "normalized_gini": normalized_gini(actual, predicted),
        "spearman": float(spearmanr(actual, predicted).statistic),
        "mae": float(np.mean(np.abs(actual - predicted))),
        "total_spend_error": float((predicted.sum() - total) / total) if total else float("nan"),
    }
