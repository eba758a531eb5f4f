"""Churn: a gradient-boosted model stacked with an RFM logistic regression and BG/NBD, calibrated out of time.

Why a blend: on real transaction logs a three-feature logistic regression on recency, frequency and monetary
value (log scale) is hard to beat; the booster adds what the other features know; BG/NBD's probability of no
purchase over the horizon extrapolates where the trees cannot (a cohort that only ages: every scored customer is
older than any the trees saw). The logits are combined by a logistic regression fitted on the newest training
snapshot (which none of the models was fitted on), which is also the calibration (Platt scaling on their logits).
The booster's logit it is fitted on comes from a booster fitted a horizon before that snapshot (:class:`DepthChoice`):
a booster fitted on the snapshots just before it shares most of its label window and looks better there than
it is when used, a horizon or more after its newest labels. The churn rate moves between snapshots (seasonality),
and the newest snapshot's rate is a noisy forecast of the next one's, so the blend's intercept is shifted (a
prior-shift correction) to the mean churn rate over all training snapshots. The target window's season can differ from
every training window's: where the history reaches a year back, the intercept is moved further by how far the
same fit a year earlier missed its own target's churn rate (:func:`backtest_shift`). Everything scoring needs
is plain numbers in the bundle metadata (``meta["blend"]``), applied by :mod:`features.churn_blend` when scoring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import chi2
from sklearn.linear_model import LogisticRegression

from features.churn_blend import RFM, logit, rfm_matrix
from training.backtest import YearAgo


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


#: Significance level of the test that the blend carries any signal on the calibration snapshot (:func:`fit_blend`).
BLEND_TEST_LEVEL = 0.05


def fit_blend(z: np.ndarray, y_cal: np.ndarray) -> tuple[list[float], float]:
    """Weights of the blend's logits (:func:`features.churn_blend.blend_logits`) and the intercept.

    Fitted on the calibration snapshot. The weights are kept only where together they beat the snapshot's churn
    rate alone by a likelihood-ratio test (as many degrees of freedom as logits, level :data:`BLEND_TEST_LEVEL`):
    where they do not, the scores ranked the calibration snapshot no better than chance, and weights fitted to its
    noise would rank every later customer by it (with permuted labels a noise tree on a strong input ranked a
    holdout at ROC-AUC 0.37). Then every customer gets the rate (weights 0).

    Args:
        z: One column per logit, one row per customer of the calibration snapshot.
        y_cal: Whether each churned (0/1).
    """
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y_cal, dtype=np.float64)
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    weights, intercept, ll_full = _nonnegative_logistic(z, y, float(np.log(rate / (1 - rate))))
    ll_rate = float(np.sum(y * np.log(rate) + (1 - y) * np.log(1 - rate)))
    if 2 * (ll_full - ll_rate) < chi2.ppf(1 - BLEND_TEST_LEVEL, df=z.shape[1]):
        return [0.0] * z.shape[1], float(np.log(rate / (1 - rate)))
    return weights, intercept


def _nonnegative_logistic(z: np.ndarray, y: np.ndarray, start: float) -> tuple[list[float], float, float]:
    """Logistic regression of ``y`` on ``z`` with weights >= 0 (intercept free): weights, intercept, log-likelihood."""

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = z @ theta[1:] + theta[0]
        # log(1 + e^eta) - y * eta, and its gradient (sigmoid(eta) - y) times the inputs.
        nll = float(np.sum(np.logaddexp(0.0, eta) - y * eta))
        g = expit(eta) - y
        return nll, np.concatenate([[g.sum()], z.T @ g])

    theta0 = np.concatenate([[start], np.zeros(z.shape[1])])
    bounds = [(None, None)] + [(0.0, None)] * z.shape[1]
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    return [float(w) for w in res.x[1:]], float(res.x[0]), -float(res.fun)


def shift_to_rate(z: np.ndarray, rate: float) -> float:
    """The shift ``d`` of the logits ``z`` that makes ``mean(sigmoid(z + d))`` equal ``rate`` (a prior shift).

    Solved exactly (bisection on a monotone function) rather than by ``logit(rate) - logit(mean)``, which misses
    the target where the probabilities are spread out.
    """
    target = min(max(float(rate), 1e-4), 1 - 1e-4)
    z = np.asarray(z, dtype=np.float64)
    lo, hi = -20.0, 20.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if float(np.mean(1.0 / (1.0 + np.exp(-(z + mid))))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


#: The back-test's shift of the churn logit is kept within these bounds (a wider one says more about a thin year).
SHIFT_BOUNDS = (-3.0, 3.0)


def backtest_shift(
    plan: YearAgo, snapshots: pd.DataFrame, fit_predict: Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
) -> tuple[float | None, str]:
    """The shift of the churn logit that brings the same fit a year earlier to its target's churn rate.

    With ``z_i`` the logits the year-ago fit gives the customers of the year-ago target snapshot and ``y`` their
    churn rate, the shift ``d`` solves ``mean_i sigmoid(z_i + d) = y`` (:func:`shift_to_rate`); it is added to the
    blend's intercept. The intercept is already set to the mean churn rate of the training snapshots; the shift
    says by how much that procedure missed a year earlier, at the same time of year (on rolling origins of
    seasonal and non-seasonal simulated businesses it halved the holdout ECE, :mod:`training.backtest`).

    Args:
        plan: The back-test's cut-offs (:func:`training.backtest.year_ago`).
        snapshots: The snapshots at ``plan``'s cut-offs (``snapshot``, ``churned`` and the features).
        fit_predict: Fits churn on the year-ago training snapshots, predicts the year-ago target's probabilities.

    Returns:
        The shift (``None`` where the year-ago target has no churner or no one staying) and how it was found.
    """
    train, target = plan.split(snapshots)
    rate = float(target.churned.mean()) if len(target) else float("nan")
    if train.empty or not 0 < rate < 1:
        return None, "no back-test a year earlier: the year-ago target snapshot has no churner or no one staying"
    p = np.asarray(fit_predict(train, target), dtype=np.float64)
    raw = shift_to_rate(logit(p), rate)
    shift = float(np.clip(raw, *SHIFT_BOUNDS))
    return shift, (
        f"churn logit {shift:+.4f}: the same fit a year earlier (on {plan.describe()}) predicted a churn rate of "
        f"{p.mean():.4f} for the {len(target)} customers of the snapshot at {plan.target:%Y-%m-%d}, whose rate "
        f"was {rate:.4f}" + ("" if shift == raw else f" (shift {raw:+.4f} clipped to {SHIFT_BOUNDS})")
    )


#: Tree depths the churn booster chooses from (:func:`choose_depth`).
DEPTHS = (2, 3, 4)


@dataclass(frozen=True)
class DepthChoice:
    """The churn booster's depth, chosen out of time (:func:`choose_depth`).

    Attributes:
        depth: The chosen depth (``None``: not chosen, the configured one stays).
        note: How it was chosen.
        newest: The chosen candidate's probabilities for the newest snapshot's rows, from a booster fitted on
            snapshots at least H older (``None`` without a choice): the booster's score as far from its training
            labels as when it is used, which the blend's weights are fitted on.
    """

    depth: int | None
    note: str
    newest: np.ndarray | None = None


def choose_depth(
    params: dict[str, Any], x: np.ndarray, y: np.ndarray, snapshots: np.ndarray, horizon_days: int, rounds: int
) -> DepthChoice:
    """The booster depth with the lowest log loss on the newest snapshot, fitted on snapshots H days older.

    The newest snapshot only validates out of time if no fitted label window overlaps its own: snapshots 30 days
    apart share most of a 90-day window, and validated on them the deepest trees won, where on every later holdout
    (online retail, complete journey, synthetic) depth 2 or 3 beat 4 on ROC-AUC, PR-AUC and Brier. So the candidates
    are fitted only on snapshots at least H before the newest (early stopping on it picks each one's best round).

    Args:
        params: XGBoost parameters of the churn booster (``max_depth`` is replaced).
        x: Encoded rows of every training snapshot.
        y: Churned (0/1).
        snapshots: Each row's cut-off (datetime64).
        horizon_days: H.
        rounds: Trees at most.

    Returns:
        The chosen depth (``None`` where no snapshot is H older than the newest, or a side has one class), a note
        and the chosen candidate's probabilities for the newest snapshot.
    """
    snapshots = np.asarray(snapshots, dtype="datetime64[ns]")
    newest = snapshots.max()
    valid = snapshots == newest
    fit = snapshots <= newest - np.timedelta64(horizon_days, "D")
    if not fit.any() or len(np.unique(y[fit])) < 2 or len(np.unique(y[valid])) < 2:
        return DepthChoice(None, "depth not chosen: no training snapshot is a horizon older than the newest")
    dfit = xgb.DMatrix(x[fit], label=y[fit], missing=np.nan)
    dvalid = xgb.DMatrix(x[valid], label=y[valid], missing=np.nan)
    losses, newest_p = {}, {}
    for depth in DEPTHS:
        booster = xgb.train(
            {**params, "max_depth": depth, "eval_metric": "logloss"},
            dfit,
            num_boost_round=rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=30,
            verbose_eval=False,
        )
        losses[depth] = float(booster.best_score)
        newest_p[depth] = booster.predict(dvalid, iteration_range=(0, booster.best_iteration + 1))
    best = min(losses, key=losses.__getitem__)
    shown = ", ".join(f"{d}: {v:.4f}" for d, v in losses.items())
    return DepthChoice(
        best,
        f"depth {best} chosen by log loss on the newest snapshot, fitted {horizon_days}+ days before it ({shown})",
        newest_p[best],
    )
