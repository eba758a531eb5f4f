"""The spend level of the CLTV model: the year-ago seasonal factor, its coverage rules and its time discipline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.cltv_model import SEASON_BOUNDS, daily_spend, level_for_snapshots, seasonal_factor, window_total

CUTS = [pd.Timestamp("2024-02-06") + pd.Timedelta(days=30 * k) for k in range(4)]
TARGET = CUTS[-1] + pd.Timedelta(days=90)


def _daily(start: str, end: pd.Timestamp, peak: float) -> pd.Series:
    """100 a day, ``peak`` times that from the year-ago target window on, no sales on Sundays."""
    days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
    amount = np.where(days >= TARGET - pd.Timedelta(days=364), 100.0 * peak, 100.0)
    tx = pd.DataFrame({"ts": days + pd.Timedelta(hours=9), "amount": amount})
    return daily_spend(tx[days.dayofweek != 6])


def test_daily_spend_sums_per_day_keeps_returns_and_fills_days_without_sales():
    tx = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-01-01 10:00", "2024-01-01 18:00", "2024-01-03 09:00"]).tz_localize("UTC"),
            "amount": [10.0, -4.0, 5.0],
        }
    )
    daily = daily_spend(tx)
    assert daily.index.tz is None
    assert daily.tolist() == [6.0, 0.0, 5.0]
    assert daily_spend(tx.iloc[:0]).empty


def test_seasonal_factor_recovers_a_planted_year_ago_ratio():
    # Year-ago target window [2023-08-06, +90) at 2.5x, the year-ago training windows (ending by then) at 1x.
    daily = _daily("2023-01-01", TARGET, peak=2.5)
    factor, note = seasonal_factor(daily, CUTS, [1, 1, 1, 1], TARGET, 90)
    # Sundays are empty in every window alike, so the ratio of sums is the planted one up to whole Sundays.
    assert factor == pytest.approx(2.5, rel=0.03)
    assert "season x" in note
    level = level_for_snapshots(pd.Series(np.repeat(CUTS, 10)), 90, daily)
    assert level.scale == pytest.approx(factor)
    assert f"{TARGET:%Y-%m-%d}" in level.note


def test_seasonal_factor_is_one_where_the_history_does_not_reach_a_year_back():
    daily = _daily("2023-03-01", TARGET, peak=2.5)  # the oldest year-ago training window starts 2023-02-07
    factor, note = seasonal_factor(daily, CUTS, [1, 1, 1, 1], TARGET, 90)
    assert factor is None and "does not cover" in note
    level = level_for_snapshots(pd.Series(CUTS), 90, daily)
    assert level.scale == 1.0 and "no seasonal factor" in level.note
    assert level_for_snapshots(pd.Series(CUTS), 90, None).scale == 1.0
    # A horizon longer than the lag would read the target window's own year: refused.
    assert seasonal_factor(daily, CUTS, [1, 1, 1, 1], TARGET, 400)[0] is None


def test_seasonal_factor_reads_nothing_at_or_after_the_target():
    daily = _daily("2023-01-01", TARGET, peak=2.5)
    later = pd.concat([daily, pd.Series(1e9, index=pd.date_range(TARGET, periods=120, freq="D"))])
    later.loc[TARGET - pd.Timedelta(days=1)] = 1e9  # also beyond the year-ago windows
    assert seasonal_factor(later, CUTS, [1] * 4, TARGET, 90)[0] == seasonal_factor(daily, CUTS, [1] * 4, TARGET, 90)[0]
    assert window_total(daily, TARGET - pd.Timedelta(days=30), 90, TARGET) is None


def test_seasonal_factor_weights_training_windows_by_rows_and_is_bounded():
    daily = _daily("2023-01-01", TARGET, peak=1.0)
    daily.loc[pd.Timestamp("2023-02-07") : pd.Timestamp("2023-05-07")] *= 3.0  # only the oldest window at 3x
    light, _ = seasonal_factor(daily, CUTS, [1, 100, 100, 100], TARGET, 90)
    heavy, _ = seasonal_factor(daily, CUTS, [100, 1, 1, 1], TARGET, 90)
    assert heavy < light < 1.0
    wild = _daily("2023-01-01", TARGET, peak=50.0)
    factor, note = seasonal_factor(wild, CUTS, [1] * 4, TARGET, 90)
    assert factor == SEASON_BOUNDS[1] and "clipped" in note
