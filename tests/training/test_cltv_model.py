"""The spend level of the CLTV model: the back-test a year earlier sets it, and nothing after the target is read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.backtest import History, YearAgo, year_ago
from training.cltv_model import (
    BALANCE_BOUNDS,
    SEASON_BOUNDS,
    backtest_level,
    balance,
    fit_spend_blend,
    spend_level,
)

CUTS = [pd.Timestamp("2024-02-06") + pd.Timedelta(days=30 * k) for k in range(4)]
TARGET = CUTS[-1] + pd.Timedelta(days=90)
LAG = pd.Timedelta(days=364)


def _snapshots(plan: YearAgo, level: float, n: int = 200) -> pd.DataFrame:
    """Training snapshots spending 100 each, the target snapshot ``level`` times that."""
    rows = [(c, 100.0) for c in plan.train_cuts for _ in range(n)] + [(plan.target, 100.0 * level)] * n
    return pd.DataFrame(rows, columns=["snapshot", "spend_h"])


def _mean_fit(train: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
    """A fit that predicts its training windows' level."""
    return np.full(len(target), train.spend_h.mean())


def test_backtest_level_is_what_the_year_ago_target_spent_over_its_prediction_and_is_bounded():
    plan, _ = year_ago(CUTS, TARGET, 90, pd.Timestamp("2022-11-01"), 60)
    assert plan is not None
    seen: list[tuple[int, int]] = []

    def fit(train: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
        seen.append((len(train), len(target)))
        return _mean_fit(train, target)

    factor, note = backtest_level(plan, _snapshots(plan, 1.8), fit)
    assert factor == pytest.approx(1.8) and "predicted 20000" in note and "spent 36000" in note
    assert seen == [(800, 200)]  # fitted on the four year-ago training snapshots, predicted for the target one
    factor, note = backtest_level(plan, _snapshots(plan, 50.0), fit)
    assert factor == SEASON_BOUNDS[1] and "clipped" in note
    factor, note = backtest_level(plan, _snapshots(plan, 0.0), fit)
    assert factor is None and "no spend" in note


def test_spend_level_reads_only_windows_that_end_before_the_target():
    asked: list[pd.Timestamp] = []

    def snapshots_at(cuts):
        asked.extend(cuts)
        return _snapshots(YearAgo(tuple(cuts[:-1]), cuts[-1], 0), 1.5)

    frame = pd.DataFrame({"snapshot": CUTS})
    level = spend_level(frame, 90, History(pd.Timestamp("2023-01-01"), 60, snapshots_at), _mean_fit)
    assert level.scale == pytest.approx(1.5)
    assert f"window from {TARGET:%Y-%m-%d}" in level.note and f"{TARGET - LAG:%Y-%m-%d}" in level.note
    assert max(asked) + pd.Timedelta(days=90) <= TARGET
    asked.clear()
    level = spend_level(frame, 90, History(pd.Timestamp("2023-10-01"), 60, snapshots_at), _mean_fit)
    assert level.scale == 1.0 and "no back-test" in level.note and asked == []
    assert spend_level(frame, 90, None, _mean_fit).scale == 1.0


def test_balance_makes_the_fit_total_its_training_rows_and_is_bounded():
    actual = np.array([0.0, 10.0, 30.0, 60.0])
    factor, note = balance(actual, np.array([5.0, 10.0, 20.0, 45.0]))
    assert factor == pytest.approx(100.0 / 80.0) and "80 for its 4 training rows" in note
    assert float(np.sum(np.array([5.0, 10.0, 20.0, 45.0]) * factor)) == pytest.approx(actual.sum())
    assert balance(actual, actual / 10)[0] == BALANCE_BOUNDS[1] and "clipped" in balance(actual, actual / 10)[1]
    assert balance(np.zeros(3), np.ones(3))[0] == 1.0


def _planted_blend(w_booster: float, w_btyd: float, n: int = 40000, seed: int = 0):
    """Two noisy predictions of a spend whose log-mean is ``w_booster log(booster) + w_btyd log(btyd)`` plus 0.2."""
    rng = np.random.default_rng(seed)
    booster = rng.gamma(2.0, 5.0, n)
    btyd = booster * rng.lognormal(0.0, 0.6, n)
    mean = np.exp(0.2 + w_booster * np.log(booster + 0.1) + w_btyd * np.log(btyd + 0.1))
    # A compound Poisson-gamma spend (Tweedie-like: many zeros, skewed amounts) with that mean.
    orders = rng.poisson(mean / 10.0)
    return booster, btyd, np.array([rng.gamma(k * 4.0, 2.5) if k else 0.0 for k in orders])


def test_the_spend_blend_recovers_planted_weights_and_keeps_the_total():
    booster, btyd, spend = _planted_blend(0.35, 0.65)
    blend = fit_spend_blend(booster, btyd, spend)
    assert blend.booster_weight == pytest.approx(0.35, abs=0.06)
    assert blend.btyd_weight == pytest.approx(0.65, abs=0.06)
    assert blend.apply(booster, btyd).sum() == pytest.approx(spend.sum(), rel=0.01)
    assert blend.booster_floor == pytest.approx(0.01 * booster.mean())


def test_the_spend_blend_never_weighs_a_prediction_negatively_and_reads_missing_as_zero():
    # The spend falls where the BTYD prediction rises (given the booster's): unconstrained, its weight would be < 0.
    booster, btyd, spend = _planted_blend(1.0, -0.5, seed=1)
    blend = fit_spend_blend(booster, btyd, spend)
    assert blend.btyd_weight == 0.0 and blend.booster_weight > 0.3
    with_nan = btyd.copy()
    with_nan[:10] = np.nan
    out = blend.apply(booster[:20], with_nan[:20])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:10], blend.apply(booster[:10], np.zeros(10)))
