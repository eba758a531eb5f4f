"""Evaluation plots saved as PNG files for MLflow (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def churn_plots(y: np.ndarray, p: np.ndarray, out: Path) -> list[Path]:
    """ROC curve, calibration curve and cumulative gains for churn probabilities on the holdout."""
    paths = []
    fpr, tpr, _ = roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (time holdout)")
    ax.legend()
    paths.append(_save(fig, out / "roc.png"))

    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(mean_pred, frac_pos, "o-", label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Calibration (holdout)")
    ax.legend()
    paths.append(_save(fig, out / "calibration.png"))

    order = np.argsort(-p)
    gains = np.cumsum(y[order]) / max(1, y.sum())
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(np.arange(1, len(y) + 1) / len(y), gains, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    ax.set(xlabel="share of customers contacted", ylabel="share of churners reached", title="Cumulative gains")
    ax.legend()
    paths.append(_save(fig, out / "cumulative_gains.png"))
    return paths


def importance_plot(names: list[str], gains: dict[str, float], out: Path, title: str) -> Path:
    """Top-20 features by XGBoost total gain."""
    items = sorted(((gains.get(f"f{i}", gains.get(n, 0.0)), n) for i, n in enumerate(names)), reverse=True)[:20]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([n for _, n in items][::-1], [g for g, _ in items][::-1])
    ax.set(xlabel="total gain", title=title)
    return _save(fig, out / "feature_importance.png")


def decile_plot(table: pd.DataFrame, out: Path) -> Path:
    """Mean predicted vs actual spend per predicted decile."""
    fig, ax = plt.subplots(figsize=(5, 4))
    x = table.index.to_numpy()
    ax.bar(x - 0.2, table["predicted"], width=0.4, label="predicted")
    ax.bar(x + 0.2, table["actual"], width=0.4, label="actual")
    ax.set(xlabel="decile of predicted spend (1 = highest)", ylabel="mean spend", title="CLTV deciles (holdout)")
    ax.legend()
    return _save(fig, out / "cltv_deciles.png")


def qini_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> Path:
    """Qini curves per offer against the random line."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (frac, qini) in curves.items():
        ax.plot(frac, qini, label=name)
        ax.plot([0, 1], [0, qini[-1]], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="share of customers targeted", ylabel="incremental outcomes", title="Qini (holdout)")
    ax.legend()
    return _save(fig, out / "qini.png")
