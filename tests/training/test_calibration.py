"""The churn calibration map: isotonic, monotone, and never certain."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression

from training.train import isotonic_calibration


def _plain(raw: np.ndarray, y: np.ndarray) -> IsotonicRegression:
    return IsotonicRegression(out_of_bounds="clip").fit(raw, y)


def test_end_blocks_take_the_rule_of_succession_instead_of_0_and_1() -> None:
    rng = np.random.default_rng(0)
    raw = np.concatenate([rng.uniform(0.0, 0.2, 50), rng.uniform(0.3, 0.7, 200), rng.uniform(0.8, 1.0, 30)])
    y = np.concatenate([np.zeros(50), rng.random(200) < np.linspace(0.1, 0.9, 200), np.ones(30)]).astype(int)
    cal = isotonic_calibration(raw, y)
    plain = _plain(raw, y)
    m_low, m_high = int(np.sum(plain.predict(raw) == 0)), int(np.sum(plain.predict(raw) == 1))
    assert m_low >= 50 and m_high >= 30  # the planted certain blocks (maybe joined by neighbours)
    p = np.interp(np.linspace(-1, 2, 1001), cal["x"], cal["y"])
    assert p.min() == 1 / (m_low + 2) and p.max() == (m_high + 1) / (m_high + 2)
    assert np.all(np.diff(cal["y"]) >= 0)
    # Every block but the two ends keeps sklearn's rate.
    inner = (plain.y_thresholds_ > 0) & (plain.y_thresholds_ < 1)
    assert inner.any() and np.array_equal(np.asarray(cal["y"])[inner], plain.y_thresholds_[inner])


def test_a_thin_end_block_never_moves_past_its_neighbour() -> None:
    # 2 non-churners at the lowest scores (rule of succession: 1/4), then 100 customers with 1 churner (a 1% block),
    # then 20 with 10 churners (50%).
    raw = np.concatenate([[0.01, 0.02], np.linspace(0.1, 0.5, 100), np.linspace(0.6, 0.9, 20)])
    y = np.concatenate([[0, 0], [1] + [0] * 99, [1, 0] * 10])
    plain = _plain(raw, y)
    assert sorted(set(plain.y_thresholds_.round(6))) == [0.0, 0.01, 0.5]
    cal = isotonic_calibration(raw, y)
    inner = plain.y_thresholds_ > 0
    assert np.array_equal(np.asarray(cal["y"])[inner], plain.y_thresholds_[inner])  # the 1% block stays 1%
    assert min(cal["y"]) == 0.01  # the end block rises to its neighbour's rate, not to 1/4
    assert np.all(np.diff(cal["y"]) >= 0)


def test_a_map_without_certain_blocks_is_left_alone() -> None:
    raw = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([1, 0, 0, 1, 1, 0])  # no block of all-0 or all-1 outcomes
    cal = isotonic_calibration(raw, y)
    plain = _plain(raw, y)
    assert cal == {"x": plain.X_thresholds_.tolist(), "y": plain.y_thresholds_.tolist()}
    assert min(cal["y"]) > 0 and max(cal["y"]) < 1
