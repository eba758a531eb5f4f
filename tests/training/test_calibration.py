"""The churn calibration map: isotonic, monotone, and never certain."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression

from training.train import isotonic_calibration


def test_end_blocks_take_the_rule_of_succession_instead_of_0_and_1() -> None:
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.uniform(0.0, 0.2, 50), rng.uniform(0.3, 0.7, 200), rng.uniform(0.8, 1.0, 30)])
    y = np.concatenate([np.zeros(50), rng.random(200) < np.linspace(0.1, 0.9, 200), np.ones(30)]).astype(int)
    cal = isotonic_calibration(raw, y)
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    m_low, m_high = int(np.sum(plain.predict(raw) == 0)), int(np.sum(plain.predict(raw) == 1))
    assert m_low >= 50 and m_high >= 30  # the planted certain blocks (maybe joined by neighbours)
    p = np.interp(np.linspace(-1, 2, 1001), cal["x"], cal["y"])
    assert p.min() == 1 / (m_low + 2) and p.max() == (m_high + 1) / (m_high + 2)
    assert np.all(np.diff(cal["y"]) >= 0)
    # Between the end blocks the map is sklearn's.
    inner = (plain.y_thresholds_ > p.min()) & (plain.y_thresholds_ < p.max())
    assert inner.any() and np.array_equal(np.asarray(cal["y"])[inner], plain.y_thresholds_[inner])


def test_a_map_without_certain_blocks_is_left_alone() -> None:
    raw = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([1, 0, 0, 1, 1, 0])  # no block of all-0 or all-1 outcomes
    cal = isotonic_calibration(raw, y)
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    assert cal == {"x": plain.X_thresholds_.tolist(), "y": plain.y_thresholds_.tolist()}
    assert min(cal["y"]) > 0 and max(cal["y"]) < 1
