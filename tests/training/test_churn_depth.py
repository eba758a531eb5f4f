"""The churn booster's depth is chosen out of time: on snapshots a horizon older than the validation snapshot."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from training.churn_model import choose_depth

PARAMS = {"objective": "binary:logistic", "eta": 0.1, "tree_method": "hist", "seed": 0, "nthread": 2}


def _snapshots(n: int, k: int) -> np.ndarray:
    return np.repeat(np.datetime64("2024-01-01") + np.arange(k) * np.timedelta64(30, "D"), n)


def test_an_interaction_needs_depth_and_an_additive_signal_does_not():
    rng = np.random.default_rng(0)
    snaps = _snapshots(2500, 5)
    x = rng.normal(size=(snaps.size, 6))
    # Churn only where three features are all positive (or all negative): no split on fewer of them tells.
    inter = (x[:, 0] > 0) == (x[:, 1] > 0)
    inter = np.where(x[:, 2] > 0, inter, ~inter)
    y = (rng.random(snaps.size) < np.where(inter, 0.8, 0.2)).astype(int)
    deep = choose_depth(PARAMS, x, y, snaps, 90, 200)
    assert deep.depth is not None and deep.depth >= 3 and "depth" in deep.note
    # The chosen candidate's probabilities for the newest snapshot, which it was not fitted on.
    newest = snaps == snaps.max()
    assert deep.newest is not None and deep.newest.shape == (int(newest.sum()),)
    assert 0.7 < roc_auc_score(y[newest], deep.newest) < 1.0
    additive = (rng.random(snaps.size) < 1 / (1 + np.exp(-(x[:, 0] - x[:, 1])))).astype(int)
    noisy = np.column_stack([x[:, :2], rng.normal(size=(snaps.size, 30))])
    assert choose_depth(PARAMS, noisy, additive, snaps, 90, 200).depth == 2


def test_no_choice_without_a_snapshot_a_horizon_older_than_the_newest():
    rng = np.random.default_rng(1)
    snaps = _snapshots(500, 3)  # 60 days from the oldest to the newest: every label window overlaps
    x = rng.normal(size=(snaps.size, 3))
    y = (rng.random(snaps.size) < 0.3).astype(int)
    choice = choose_depth(PARAMS, x, y, snaps, 90, 50)
    assert choice.depth is None and choice.newest is None and "not chosen" in choice.note
