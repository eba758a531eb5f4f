"""The direct XGBoost C-API path of the scoring runtime gives the public API's numbers (SHAP: up to rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from features.scoring import _Predictor


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=400) > 0).astype(float)
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=y), 25)
    b.set_param({"nthread": 1})
    return b


@pytest.mark.parametrize("rows", [1, 4, 57])
def test_predict_and_contributions_match_the_public_api(booster: xgb.Booster, rows: int) -> None:
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 12)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    fast = _Predictor(booster)
    np.testing.assert_array_equal(fast.predict(x), booster.inplace_predict(x))
    expected = booster.predict(xgb.DMatrix(x, missing=np.nan, nthread=1), pred_contribs=True)
    # Contributions come from the PathShap tables (features.treeshap): XGBoost's numbers up to float rounding.
    np.testing.assert_allclose(fast.contributions(x), expected, rtol=1e-5, atol=1e-6)
    # The result is a copy: a later call must not overwrite an earlier answer.
    first = fast.predict(x)
    fast.predict(rng.normal(size=(rows, 12)).astype(np.float32))
    np.testing.assert_array_equal(first, booster.inplace_predict(x))


def test_other_inputs_take_the_public_path(booster: xgb.Booster) -> None:
    x = np.random.default_rng(1).normal(size=(5, 24)).astype(np.float32)[:, ::2]  # not C-contiguous
    fast = _Predictor(booster)
    np.testing.assert_array_equal(fast.predict(x), booster.inplace_predict(x))
    np.testing.assert_array_equal(fast.predict(x.astype(np.float64)), booster.inplace_predict(x.astype(np.float64)))
    with pytest.raises(xgb.core.XGBoostError):
        fast.predict(np.zeros((2, 3), dtype=np.float32))  # wrong number of features: XGBoost's own error
