"""Fitting the BTYD inputs the churn and CLTV boosters read (:mod:`features.btyd_inputs` computes them).

Both models are fitted on rows of several snapshots; each row is one customer's history up to its own cut-off, and
the likelihoods of BG/NBD and Gamma-Gamma are products over such histories, so the rows are pooled (the parameters
describe the population, not a moment).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from features.btyd import BGParams, GGParams
from features.btyd_inputs import BGNBD_SUMMARY, GAMMA_GAMMA, ORDER_VALUE
from training.btyd import BetaGeoFitter, GammaGammaFitter

#: Days per BG/NBD time unit (weeks, as in :mod:`training.btyd`).
BG_TIME_UNIT_DAYS = 7.0


def fit_bgnbd(x: np.ndarray, columns: list[str], horizon_days: int) -> dict[str, float] | None:
    """BG/NBD parameters fitted on the rows' summaries (the registry's ``bg_*`` features), for the booster's inputs.

    Rows of several snapshots are pooled: each is one customer's history up to its own cut-off, and the likelihood
    of BG/NBD is a product over such histories (the parameters describe the population, not a moment).

    Returns:
        ``BGParams.to_json()`` plus ``horizon_days`` (read by :func:`features.btyd_inputs.bgnbd_inputs`), or
        ``None`` where the rows lack the summary, none has a purchase or the fit fails (the booster then reads
        the feature table alone).
    """
    if not set(BGNBD_SUMMARY) <= set(columns):
        return None
    idx = [columns.index(c) for c in BGNBD_SUMMARY]
    summary = np.asarray(x[:, idx], dtype=np.float64)
    ok = np.isfinite(summary).all(axis=1)
    if not ok.any():
        return None
    freq, rec, age = summary[ok, 0], summary[ok, 1] / BG_TIME_UNIT_DAYS, summary[ok, 2] / BG_TIME_UNIT_DAYS
    try:
        fitted = BetaGeoFitter().fit(freq, rec, np.maximum(age, rec))
    except ValueError:
        return None
    params = BGParams(**fitted.params_, time_unit_days=BG_TIME_UNIT_DAYS)
    return {**params.to_json(), "horizon_days": float(horizon_days)}


def fit_gamma_gamma(x: np.ndarray, columns: list[str]) -> dict[str, float] | None:
    """Gamma-Gamma parameters fitted on the rows' repeat purchase days and mean purchase value.

    The model's ``m`` is the mean of the repeat purchases; the registry's ``avg_order_value`` averages every
    purchase, the first included, which is what a scoring row has. Returns ``None`` where the rows lack the
    columns, fewer than two have a repeat purchase and a positive value, the fit fails, or its population mean is
    infinite (``q <= 1``).
    """
    names = (BGNBD_SUMMARY[0], ORDER_VALUE)
    if not set(names) <= set(columns):
        return None
    frequency, value = (np.asarray(x[:, columns.index(c)], dtype=np.float64) for c in names)
    ok = np.isfinite(frequency) & np.isfinite(value) & (frequency > 0) & (value > 0)
    try:
        params = GammaGammaFitter().fit(frequency[ok], value[ok]).params_
    except ValueError:
        return None
    return GGParams(**params).to_json() if params["q"] > 1.0 else None


def fit_inputs(x: np.ndarray, columns: list[str], horizon_days: int, spend: bool = False) -> dict[str, Any] | None:
    """The parameters of the BTYD inputs: BG/NBD's and, with ``spend``, Gamma-Gamma's (the spend input).

    ``None`` where BG/NBD cannot be fitted (the booster then reads the feature table alone); without a Gamma-Gamma
    fit the spend input is left out.
    """
    bgnbd = fit_bgnbd(x, columns, horizon_days)
    if bgnbd is None or not spend:
        return bgnbd
    gamma_gamma = fit_gamma_gamma(x, columns)
    return bgnbd if gamma_gamma is None else {**bgnbd, GAMMA_GAMMA: gamma_gamma}
