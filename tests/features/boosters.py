"""Small XGBoost models for the tests of the numpy tree readers (``features.forest``, ``features.treeshap``)."""

from __future__ import annotations

import numpy as np
import xgboost as xgb


def train(params: dict, x: np.ndarray, y: np.ndarray, rounds: int = 30) -> xgb.Booster:
    """A seeded single-threaded booster (NaN = missing), predicting on one thread as the service does."""
    booster = xgb.train({"nthread": 1, "seed": 0, **params}, xgb.DMatrix(x, label=y, missing=np.nan), rounds)
    booster.set_param({"nthread": 1})
    return booster


def unsupported(x: np.ndarray, y: np.ndarray) -> dict[str, xgb.Booster]:
    """Models no numpy reader covers: no trees, DART, several classes, a categorical split."""
    labels = np.arange(len(y)) % 3
    return {
        "no trees": train({"objective": "reg:squarederror"}, x, y, 0),
        "dart": train({"objective": "reg:squarederror", "booster": "dart", "max_depth": 3}, x, y, 5),
        "multiclass": train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2}, x, labels, 5),
        "categorical": xgb.train(
            {"max_depth": 2, "nthread": 1},
            xgb.DMatrix(np.nan_to_num(x[:, :1]) % 3, label=y, feature_types=["c"], enable_categorical=True),
            5,
        ),
    }
