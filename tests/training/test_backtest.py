"""The back-test a year earlier: which cut-offs it moves back, which it leaves out, when there is none."""

from __future__ import annotations

import pandas as pd

from training.backtest import History, YearAgo, plan_for, year_ago, year_ago_snapshots

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
    assert "2023-03-09" in plan.describe() and "2023-02-07" not in plan.describe()
    assert plan.describe().endswith("1 more left out, too early in the data")


def test_year_ago_refuses_a_short_history_and_a_horizon_longer_than_the_lag():
    # Fewer than half of the training cut-offs moved back have their history: no back-test.
    plan, why = year_ago(CUTS, TARGET, 90, pd.Timestamp("2023-04-10"), 0)
    assert plan is None and "no back-test" in why and "(1 of 4)" in why
    # The target moved back has no history either.
    assert year_ago(CUTS, TARGET, 90, pd.Timestamp("2023-09-01"), 0)[0] is None
    assert year_ago(CUTS, TARGET, 400, pd.Timestamp("2020-01-01"), 0)[0] is None


def test_plan_for_a_fit_targets_the_window_after_its_newest_snapshot_and_splits_its_snapshots():
    frame = pd.DataFrame({"snapshot": [c for c in CUTS for _ in range(3)]})
    history = History(pd.Timestamp("2022-11-01"), 30, lambda cuts: pd.DataFrame({"snapshot": list(cuts)}))
    plan, _ = plan_for(frame, 90, history)
    assert plan is not None and plan.target == TARGET - LAG
    # Every window the back-test reads ends before the fit's own target.
    assert plan.target + pd.Timedelta(days=90) <= TARGET
    train, target = plan.split(history.snapshots_at([*plan.train_cuts, plan.target]))
    assert list(train.snapshot) == list(plan.train_cuts) and list(target.snapshot) == [plan.target]
    assert plan_for(frame, 90, None) == (None, "no back-test a year earlier: no history given")


def test_year_ago_snapshots_refuse_a_snapshot_with_too_few_customers():
    plan, _ = year_ago(CUTS, TARGET, 90, pd.Timestamp("2022-11-01"), 30)
    assert plan is not None

    def thin(cuts):  # the oldest year-ago snapshot has 3 customers, the others 60
        return pd.DataFrame({"snapshot": [c for c in cuts for _ in range(3 if c == cuts[0] else 60)]})

    assert year_ago_snapshots(plan, History(pd.Timestamp("2022-11-01"), 30, thin, 50))[0] is None
    snapshots, why = year_ago_snapshots(plan, History(pd.Timestamp("2022-11-01"), 30, thin, 3))
    assert snapshots is not None and why == "" and len(snapshots) == 3 + 60 * 4
    _, why = year_ago_snapshots(plan, History(pd.Timestamp("2022-11-01"), 30, thin, 50))
    assert "3 customers in the snapshot at 2023-02-07" in why
