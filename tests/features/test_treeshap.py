"""PathShap's tabulated SHAP contributions equal XGBoost's ``pred_contribs``, and it declines models it cannot do."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from features.scoring import Predictor
from features.treeshap import MAX_DEPTH, ROW_BLOCK, PathShap
from tests.features.boosters import train, unsupported


def _data(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, cols)).astype(np.float32)
    # Few distinct values in one column (ties at thresholds) and missing values everywhere.
    x[:, 0] = rng.integers(0, 4, size=rows)
    x[rng.random(x.shape) < 0.15] = np.nan
    y = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) + rng.normal(size=rows)
    return x, y


def _reference(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(x, missing=np.nan, nthread=1), pred_contribs=True)


@pytest.mark.parametrize("depth", [1, 2, 4, MAX_DEPTH])
@pytest.mark.parametrize("objective", ["binary:logistic", "reg:squarederror"])
def test_equals_xgboost(objective: str, depth: int) -> None:
    # Three features and deep trees: the same feature is split several times on one path.
    cols = 3 if depth == MAX_DEPTH else 6
    x, y = _data(600, cols, seed=depth)
    if objective == "binary:logistic":
        y = (y > np.median(y)).astype(float)
    booster = train({"objective": objective, "max_depth": depth, "min_child_weight": 0.5}, x, y)
    shap = PathShap.from_booster(booster)
    assert shap is not None
    probe, _ = _data(203, cols, seed=100 + depth)
    assert len(probe) % ROW_BLOCK  # a last, shorter block
    probe[:5] = np.nan  # all-missing rows follow every default direction
    got = shap.contributions(probe)
    expected = _reference(booster, probe)
    assert got.shape == expected.shape == (203, cols + 1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Contributions add up to the margin (SHAP's efficiency), as XGBoost's do.
    margin = booster.predict(xgb.DMatrix(probe, missing=np.nan), output_margin=True)
    np.testing.assert_allclose(got.sum(axis=1), margin, rtol=1e-5, atol=1e-4)


def test_inputs_at_the_thresholds_go_where_xgboost_sends_them() -> None:
    x, y = _data(500, 4, seed=7)
    booster = train({"objective": "reg:squarederror", "max_depth": 4}, x, y)
    shap = PathShap.from_booster(booster)
    assert shap is not None
    # Rows made of the split thresholds themselves (``x < t`` goes left, so equal goes right).
    thresholds = np.array(sorted({float(t) for t in booster.trees_to_dataframe()["Split"].dropna()}), np.float32)
    probe = np.resize(thresholds, (len(thresholds), 4)).astype(np.float32)
    np.testing.assert_allclose(shap.contributions(probe), _reference(booster, probe), rtol=1e-5, atol=1e-5)


def test_declines_models_it_does_not_tabulate() -> None:
    x, y = _data(300, 3, seed=1)
    deep = train({"objective": "reg:squarederror", "max_depth": MAX_DEPTH + 2, "min_child_weight": 0}, x, y, 5)
    assert PathShap.from_booster(deep) is None
    for name, booster in unsupported(x, y).items():
        assert PathShap.from_booster(booster) is None, name


def test_predictor_uses_tables_and_falls_back_to_xgboost() -> None:
    x, y = _data(300, 3, seed=2)
    shallow = train({"objective": "reg:squarederror", "max_depth": 3}, x, y)
    predictor = Predictor(shallow)
    predictor.prepare_contributions()
    assert predictor._shap is not None
    np.testing.assert_array_equal(predictor.contributions(x[:7]), predictor._shap.contributions(x[:7]))
    deep = train({"objective": "reg:squarederror", "max_depth": MAX_DEPTH + 2, "min_child_weight": 0}, x, y, 5)
    fallback = Predictor(deep)
    np.testing.assert_array_equal(fallback.contributions(x[:7]), _reference(deep, x[:7]))


def test_wrong_width_is_a_clear_error() -> None:
    x, y = _data(200, 3, seed=3)
    shap = PathShap.from_booster(train({"objective": "reg:squarederror", "max_depth": 2}, x, y, 5))
    assert shap is not None
    with pytest.raises(ValueError, match=r"\(rows, 3\)"):
        shap.contributions(np.zeros((2, 4), np.float32))
