"""CLTV: the level of the spend predictions, set by the same fit made a year earlier.

A Tweedie booster fitted on stacked snapshots predicts, in total, roughly the spend level of the label windows it
was fitted on, as its features carried it there. The window it is used for, ``[T, T + H)``, can sit in another
season: on a retailer whose holdout holds the Christmas peak, the model fitted on spring and summer windows fell
40% short in total, by the same share for new, recent and long-standing customers.

The level is set by a **back-test a year earlier**. Every training cut-off ``c`` and the target ``T`` are moved
364 days back (52 weeks, so weekdays line up); a booster fitted the same way on the snapshots at ``c - 364``
predicts the spend of the snapshot at ``T - 364``, whose outcome is known before ``T``. The factor is

    s = sum_i y_i(T - 364) / sum_i yhat_i(T - 364),

the year-ago total over what the same procedure predicted for it, clipped to :data:`SEASON_BOUNDS`, and every
spend prediction for ``[T, T + H)`` is multiplied by ``s``. It answers "how far off was this procedure at this
time of year", which is what the level needs: the season of the target window against the training windows,
the season the features themselves carry (a December snapshot's recent spend is high), both as the model maps
them.

It replaced a calendar ratio (the business's spend in the year-ago target window over that in the year-ago
training windows). That ratio reads acquisition growth as season: on a simulated BG/NBD + Gamma-Gamma business
(customers acquired over its first 14 months, two years of data, no season) it was 1.4 to 1.6, and the CLTV
total came out +46% to +71% where no factor was within 5% and the back-test within +16%. On rolling origins
(mean absolute total error; no factor / calendar ratio / back-test): the generator's three-year data
0.22 / 0.09 / 0.04; the BG/NBD business over three years 0.03 / 0.30 / 0.04; a seasonal BG/NBD business over
three years 0.47 / 0.44 / 0.17; the two-year demo data (three seeds) 0.42 / 0.01 / 0.03.

A back-test needs a year of history: the year-ago target snapshot and at least half of the year-ago training
snapshots must each have :data:`BACKTEST_HISTORY_DAYS` before them (a fit on fewer windows spans another mix of
seasons); otherwise nothing is known about the target's season and the factor is 1. The year-ago fit keeps every
snapshot it can, fewer than the fit it mirrors only where the data begin: on the two-year demo data (three
draws) the total error was 0.010, 0.016 and 0.074 with all six year-ago snapshots, and 0.027, 0.037 and 0.096
when 60 days of history were asked for and the oldest was dropped.

Everything scoring needs is the one number ``meta["spend_scale"]``; ``meta["spend_scale_note"]`` says how it was
found. Functions here are pure (no I/O, no ``now()``): the caller builds the snapshots and fits the booster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Days back to the same calendar window a year earlier (52 weeks: weekdays line up).
YEAR_LAG_DAYS = 364
#: History a year-ago snapshot needs before its cut-off (at most: a training setting asking less is followed).
BACKTEST_HISTORY_DAYS = 30
#: The seasonal factor is kept within these bounds: a ratio beyond them says more about a thin history.
SEASON_BOUNDS = (0.25, 4.0)

#: Builds the stacked snapshots (features and labels, with ``snapshot`` and ``spend_h``) at the given cut-offs.
SnapshotSource = Callable[[Sequence[pd.Timestamp]], pd.DataFrame]
#: Fits the spend booster on the first frame (training snapshots) and predicts the second's spend (>= 0).
FitPredict = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class SpendLevel:
    """The factor applied to every spend prediction and how it was found."""

    scale: float
    note: str


@dataclass(frozen=True)
class History:
    """Where a back-test's snapshots come from.

    Attributes:
        start: First day of the data.
        min_history_days: History a snapshot needs before its cut-off (as for the training snapshots).
        snapshots_at: Builds the snapshots at given cut-offs (labels from the same data: callers only ask for
            cut-offs whose label windows end before the fit's own cut-off).
    """

    start: pd.Timestamp
    min_history_days: int
    snapshots_at: SnapshotSource


@dataclass(frozen=True)
class YearAgo:
    """The cut-offs of a back-test a year earlier.

    Attributes:
        train_cuts: The training cut-offs moved back that have enough history before them.
        target: The target moved back.
        skipped: How many training cut-offs moved back did not.
    """

    train_cuts: tuple[pd.Timestamp, ...]
    target: pd.Timestamp
    skipped: int


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
        return None, f"horizon {horizon_days} days is longer than the {lag_days}-day seasonal lag: no seasonal factor"
    lag = pd.Timedelta(days=lag_days)
    earliest = pd.Timestamp(start) + pd.Timedelta(days=min_history_days)
    moved = [pd.Timestamp(c) - lag for c in cuts]
    kept = tuple(c for c in moved if c >= earliest)
    target_ago = pd.Timestamp(target) - lag
    if target_ago < earliest or 2 * len(kept) < len(moved) or not kept:
        return None, (
            f"no seasonal factor: the history (from {pd.Timestamp(start):%Y-%m-%d}) does not give "
            f"{min_history_days} days before the cut-off {lag_days} days before the target ({target_ago:%Y-%m-%d}) "
            f"and before at least half of the training cut-offs moved back as far ({len(kept)} of {len(moved)})"
        )
    return YearAgo(kept, target_ago, len(moved) - len(kept)), ""


def backtest_level(plan: YearAgo, snapshots: pd.DataFrame, fit_predict: FitPredict) -> tuple[float | None, str]:
    """The year-ago target's spend over what the same fit a year earlier predicted for it.

    Args:
        plan: :func:`year_ago`.
        snapshots: The snapshots at ``plan``'s cut-offs (``snapshot``, ``spend_h`` and the features).
        fit_predict: Fits on the year-ago training snapshots, predicts the year-ago target's spend.

    Returns:
        The factor (``None`` where the back-test has no spend to compare) and a sentence saying how it was found.
    """
    train = snapshots[snapshots.snapshot < plan.target]
    target = snapshots[snapshots.snapshot == plan.target]
    if train.empty or target.empty:
        return None, "no seasonal factor: no customers in the year-ago snapshots"
    predicted = float(np.sum(fit_predict(train, target)))
    actual = float(target.spend_h.clip(lower=0).sum())
    if predicted <= 0 or actual <= 0:
        return None, "no seasonal factor: no spend in the year-ago target window or in its prediction"
    raw = actual / predicted
    factor = float(np.clip(raw, *SEASON_BOUNDS))
    return factor, (
        f"season x {factor:.4f}: the same fit a year earlier (on the {len(plan.train_cuts)} snapshots "
        f"{', '.join(f'{c:%Y-%m-%d}' for c in plan.train_cuts)}) predicted {predicted:.6g} for the "
        f"{len(target)} customers of the snapshot at {plan.target:%Y-%m-%d}, who spent {actual:.6g}"
        + ("" if factor == raw else f" (ratio {raw:.4f} clipped to {SEASON_BOUNDS})")
    )


def spend_level(
    cuts: Sequence[pd.Timestamp],
    target: pd.Timestamp,
    horizon_days: int,
    history: History | None,
    fit_predict: FitPredict,
) -> SpendLevel:
    """The factor for every spend prediction of a model fitted on ``cuts`` and used for ``[target, target + H)``.

    Args:
        cuts: Training snapshot cut-offs.
        target: The window's start (the fit's own cut-off).
        horizon_days: H.
        history: Where the back-test's snapshots come from (``None``: no seasonal factor).
        fit_predict: Fits the spend booster as the model's own fit does and predicts.
    """
    factor: float | None = None
    if history is None:
        why = "no seasonal factor: no history given"
    else:
        plan, why = year_ago(cuts, target, horizon_days, history.start, history.min_history_days)
        if plan is not None:
            factor, why = backtest_level(plan, history.snapshots_at([*plan.train_cuts, plan.target]), fit_predict)
    scale = 1.0 if factor is None else factor
    head = f"spend predictions x {scale:.4f} for the {horizon_days}-day window from {pd.Timestamp(target):%Y-%m-%d}"
    return SpendLevel(scale, "; ".join(part for part in (head, why) if part))
