"""The direct XGBoost C-API path of the scoring runtime gives the public API's numbers (SHAP: up to rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from features.scoring import Predictor


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
    fast = Predictor(booster)
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
    fast = Predictor(booster)
    np.testing.assert_array_equal(fast.predict(x), booster.inplace_predict(x))
    np.testing.assert_array_equal(fast.predict(x.astype(np.float64)), booster.inplace_predict(x.astype(np.float64)))
    with pytest.raises(ValueError, match="shape mismatch"):
        fast.predict(np.zeros((2, 3), dtype=np.float32))  # wrong number of features: XGBoost's public API refuses it


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e300 is inf in float32
def test_rows_are_encoded_as_value_by_value_encoding_would() -> None:
    """``Encoder.encode_rows`` reads numeric columns in one numpy call; the result is ``_value``'s, cell by cell."""
    from features.scoring import Encoder

    enc = Encoder(columns=["a", "b", "c", "attr_x"], categories={"attr_x": ["p", "q"]})
    odd = [None, 0, 1, -2, 3.25, 1e300, -1e-300, float("nan"), float("inf"), True, False, 2**60 + 1]
    odd += ["3.5", " 3.5 ", "1e3", "1_000", "nan", "-inf", "abc", "", [1, 2], {"k": 1}]
    rng = np.random.default_rng(0)
    rows: list[dict] = [{}, {"unknown": 1.0}, {"attr_x": "q", "a": 1}, {"attr_x": 7}, {"attr_x": None}]
    for _ in range(400):
        row = {c: odd[rng.integers(len(odd))] for c in ("a", "b", "c") if rng.random() < 0.8}
        row["attr_x"] = ["p", "q", "r", None][rng.integers(4)]
        rows.append(row)
    expected = np.full((len(rows), 4), np.nan, dtype=np.float32)
    for i, row in enumerate(rows):
        for j, col in enumerate(enc.columns):
            if col in row:
                expected[i, j] = enc._value(col, row[col])
    np.testing.assert_array_equal(enc.encode_rows(rows), expected)
    np.testing.assert_array_equal(np.vstack([enc.encode_rows([r]) for r in rows]), expected)
