"""A back-test a year earlier: the same fit, moved back 52 weeks, whose miss on its own target is known.

A model fitted on stacked snapshots learns the level of its training windows (their spend, their churn rate);
the window it is used for can sit in another season, and the business can have grown or aged since. Moving every
training cut-off ``c`` and the target ``T`` back 364 days (52 weeks, so weekdays line up) and refitting the same
way gives a fit whose target, ``[T - 364, T - 364 + H)``, ended before ``T``: how far that fit missed its target's
level is the best available estimate of how far this one will miss at the same time of year
(:mod:`training.cltv_model` for the spend level, :mod:`training.churn_model` for the churn rate).

A back-test needs a year of history: the year-ago target snapshot and at least half of the year-ago training
snapshots must each have :data:`BACKTEST_HISTORY_DAYS` of data before them (a fit on fewer windows spans another
mix of seasons); otherwise nothing is known about the target's season. The year-ago fit keeps every snapshot it
can, fewer than the fit it mirrors only where the data begin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

#: Days back to the same calendar window a year earlier (52 weeks: weekdays line up).
YEAR_LAG_DAYS = 364
#: History a year-ago snapshot needs before its cut-off (at most: a training setting asking less is followed).
BACKTEST_HISTORY_DAYS = 30

#: Builds the stacked snapshots (features and labels, with a ``snapshot`` column) at the given cut-offs.
SnapshotSource = Callable[[Sequence[pd.Timestamp]], pd.DataFrame]


@dataclass(frozen=True)
class History:
    """Where a back-test's snapshots come from.

    Attributes:
        start: First day of the data.
        min_history_days: History a snapshot needs before its cut-off.
        snapshots_at: Builds the snapshots at given cut-offs (labels from the same data: callers only ask for
            cut-offs whose label windows end before the fit's own cut-off).
        min_customers: Customers every year-ago snapshot needs (as every training snapshot does).
    """

    start: pd.Timestamp
    min_history_days: int
    snapshots_at: SnapshotSource
    min_customers: int = 1


@dataclass(frozen=True)
class YearAgo:
    """The cut-offs of a back-test a year earlier and its snapshots.

    Attributes:
        train_cuts: The training cut-offs moved back that have enough history before them.
        target: The target moved back.
        skipped: How many training cut-offs moved back did not.
    """

    train_cuts: tuple[pd.Timestamp, ...]
    target: pd.Timestamp
    skipped: int

    def split(self, snapshots: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The year-ago training snapshots and the year-ago target snapshot of ``snapshots``."""
        return snapshots[snapshots.snapshot < self.target], snapshots[snapshots.snapshot == self.target]

    def describe(self) -> str:
        """Which snapshots the year-ago fit was made on, and how many it left out for want of history."""
        cuts = ", ".join(f"{c:%Y-%m-%d}" for c in self.train_cuts)
        left_out = f"; {self.skipped} more left out, too early in the data" if self.skipped else ""
        return f"the {len(self.train_cuts)} snapshots {cuts}{left_out}"


def year_ago(
    cuts: Sequence[pd.Timestamp],
    target: pd.Timestamp,
    horizon_days: int,
    start: pd.Timestamp,
    min_history_days: int,
    lag_days: int = YEAR_LAG_DAYS,
) -> tuple[YearAgo | None, str]:
    """The back-test's cut-offs, or why there is none.

    Args:
        cuts: Training snapshot cut-offs (each label window is ``[cut, cut + H)``).
        target: Start of the window the predictions are for (the fit's own cut-off).
        horizon_days: H.
        start: First day of the data.
        min_history_days: History a snapshot needs before its cut-off.
        lag_days: How far back the back-test lies.

    Returns:
        The plan (``None`` where the history is too short) and a sentence saying why not ("" with a plan).
    """
    if lag_days < horizon_days:
        return None, f"horizon {horizon_days} days is longer than the {lag_days}-day seasonal lag: no back-test"
    lag = pd.Timedelta(days=lag_days)
    earliest = pd.Timestamp(start) + pd.Timedelta(days=min_history_days)
    moved = [pd.Timestamp(c) - lag for c in cuts]
    kept = tuple(c for c in moved if c >= earliest)
    target_ago = pd.Timestamp(target) - lag
    if target_ago < earliest or 2 * len(kept) < len(moved) or not kept:
        return None, (
            f"no back-test a year earlier: the history (from {pd.Timestamp(start):%Y-%m-%d}) does not give "
            f"{min_history_days} days before the cut-off {lag_days} days before the target ({target_ago:%Y-%m-%d}) "
            f"and before at least half of the training cut-offs moved back as far ({len(kept)} of {len(moved)})"
        )
    return YearAgo(kept, target_ago, len(moved) - len(kept)), ""


def plan_for(frame: pd.DataFrame, horizon_days: int, history: History | None) -> tuple[YearAgo | None, str]:
    """:func:`year_ago` of a fit on the snapshots of ``frame``, used for the window H days after its newest one.

    That window is the holdout for the evaluation fit and the as-of T for the registered one (training cut-offs
    end at ``T - H``).
    """
    if history is None:
        return None, "no back-test a year earlier: no history given"
    cuts = sorted(pd.Timestamp(c) for c in frame.snapshot.unique())
    target = cuts[-1] + pd.Timedelta(days=horizon_days)
    return year_ago(cuts, target, horizon_days, history.start, history.min_history_days)


def year_ago_snapshots(plan: YearAgo, history: History) -> tuple[pd.DataFrame | None, str]:
    """The back-test's snapshots, or why there are too few customers in them to fit on."""
    snapshots = history.snapshots_at([*plan.train_cuts, plan.target])
    counts = snapshots.groupby("snapshot").size().reindex([*plan.train_cuts, plan.target], fill_value=0)
    if counts.min() < history.min_customers:
        return None, (
            f"no back-test a year earlier: {counts.min()} customers in the snapshot at {counts.idxmin():%Y-%m-%d} "
            f"(a snapshot needs {history.min_customers})"
        )
    return snapshots, ""
