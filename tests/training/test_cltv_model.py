"""The spend level of the CLTV model: the back-test a year earlier, its coverage rules and its time discipline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.cltv_model import SEASON_BOUNDS, History, YearAgo, backtest_level, spend_level, year_ago

CUTS = [pd.Timestamp("2024-02-06") + pd.Timedelta(days=30 * k) for k in range(4)]
TARGET = CUTS[-1] + pd.Timedelta(days=90)
LAG = pd.Timedelta(days=364)


def test_year_ago_moves_every_cut_off_back_52_weeks_and_skips_those_without_history():
    plan, why = year_ago(CUTS, TARGET, 90, pd.Timestamp("2022-11-01"), 60)
    assert why == "" and plan == YearAgo(tuple(c - LAG for c in CUTS), TARGET - LAG, 0)
    assert all((c - LAG).dayofweek == c.dayofweek for c in CUTS)
    # The oldest moved-back cut-off (2023-02-07) has 37 days of history from 2023-01-01: left out.
    plan, _ = year_ago(CUTS, TARGET, 90, pd.Timestamp("2023-01-01"), 60)
    assert plan is not None and plan.train_cuts == tuple(c - LAG for c in CUTS[1:]) and plan.skipped == 1


def test_year_ago_refuses_a_short_history_and_a_horizon_longer_than_the_lag():
    # Fewer than half of the training cut-offs moved back have their history: no back-test.
    plan, why = year_ago(CUTS, TARGET, 90, pd.Timestamp("2023-04-10"), 0)
    assert plan is None and "no seasonal factor" in why and "(1 of 4)" in why
    # The target moved back has no history either.
    assert year_ago(CUTS, TARGET, 90, pd.Timestamp("2023-09-01"), 0)[0] is None
    assert year_ago(CUTS, TARGET, 400, pd.Timestamp("2020-01-01"), 0)[0] is None


def _snapshots(plan: YearAgo, level: float, n: int = 200) -> pd.DataFrame:
    """Training snapshots spending 100 each, the target snapshot ``level`` times that."""
    rows = [(c, 100.0) for c in plan.train_cuts for _ in range(n)] + [(plan.target, 100.0 * level)] * n
    return pd.DataFrame(rows, columns=["snapshot", "spend_h"])


def test_backtest_level_is_what_the_year_ago_target_spent_over_its_prediction_and_is_bounded():
    plan, _ = year_ago(CUTS, TARGET, 90, pd.Timestamp("2022-11-01"), 60)
    seen: list[tuple[int, int]] = []

    def train_level(train: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
        seen.append((len(train), len(target)))
        return np.full(len(target), train.spend_h.mean())  # a fit that predicts its training windows' level

    factor, note = backtest_level(plan, _snapshots(plan, 1.8), train_level)
    assert factor == pytest.approx(1.8) and "season x 1.8000" in note
    assert seen == [(800, 200)]  # fitted on the four year-ago training snapshots, predicted for the target one
    factor, note = backtest_level(plan, _snapshots(plan, 50.0), train_level)
    assert factor == SEASON_BOUNDS[1] and "clipped" in note
    factor, note = backtest_level(plan, _snapshots(plan, 0.0), train_level)
    assert factor is None and "no spend" in note


def test_spend_level_reads_only_windows_that_end_before_the_target():
    asked: list[pd.Timestamp] = []

    def snapshots_at(cuts):
        asked.extend(cuts)
        plan = YearAgo(tuple(cuts[:-1]), cuts[-1], 0)
        return _snapshots(plan, 1.5)

    level = spend_level(CUTS, TARGET, 90, History(pd.Timestamp("2023-01-01"), 60, snapshots_at), _mean_fit)
    assert level.scale == pytest.approx(1.5)
    assert f"window from {TARGET:%Y-%m-%d}" in level.note and f"{TARGET - LAG:%Y-%m-%d}" in level.note
    assert max(asked) + pd.Timedelta(days=90) <= TARGET
    short = History(pd.Timestamp("2023-10-01"), 60, snapshots_at)
    asked.clear()
    level = spend_level(CUTS, TARGET, 90, short, _mean_fit)
    assert level.scale == 1.0 and "no seasonal factor" in level.note and asked == []
    assert spend_level(CUTS, TARGET, 90, None, _mean_fit).scale == 1.0


def _mean_fit(train: pd.DataFrame, target: pd.DataFrame) -> np.ndarray:
    return np.full(len(target), train.spend_h.mean())
