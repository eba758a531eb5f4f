"""A bare one-model BentoML service, written the way BentoML's documentation shows: the baseline of
``benchmarks/serving.py``.

``@bentoml.service`` with default settings, one ``@bentoml.api`` endpoint taking a pydantic body
``{"features": [floats]}`` and answering the churn booster's raw probability for that row. No auth, no feature
lookup, no calibration, no reasons, no decision log, no tuning (default workers, threads and logging).

The booster file is the ``main`` booster of a churn bundle, named by ``BARE_BOOSTER_PATH``::

    BARE_BOOSTER_PATH=.../churn_bundle/main.ubj .venv/bin/bentoml serve benchmarks.bare_service:Bare --port 3100
    curl -s localhost:3100/predict -H 'Content-Type: application/json' -d '{"features": [0.0, 1.5, ...]}'
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import xgboost as xgb
from pydantic import BaseModel

BOOSTER_ENV = "BARE_BOOSTER_PATH"


class Features(BaseModel):
    """One encoded customer row, in the model's column order."""

    features: list[float]


class Prediction(BaseModel):
    """The booster's output for the row."""

    probability: float


@bentoml.service
class Bare:
    """Churn probability for one feature vector."""

    def __init__(self) -> None:
        self.booster = xgb.Booster()
        self.booster.load_model(os.environ[BOOSTER_ENV])

    @bentoml.api
    def predict(self, request: Features, /) -> Prediction:
        """Probability of churn for one row."""
        x = np.asarray([request.features], dtype=np.float32)
        return Prediction(probability=float(self.booster.inplace_predict(x)[0]))
