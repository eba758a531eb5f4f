"""Scoring arithmetic of the CLTV spend blend, numpy only: the booster's spend and BG/NBD + Gamma-Gamma's, mixed.

The spend over the horizon is a weighted geometric mean of two predictions, with a free level:

    spend = exp(c + w_b * log(booster + f_b) + w_g * log(btyd + f_g)),   w_b, w_g >= 0,

where ``booster`` is the Tweedie booster's prediction and ``btyd`` the customer's BG/NBD expected orders times
the Gamma-Gamma expected spend per purchase (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis"), the booster's own input :data:`features.btyd_inputs.SPEND_INPUT`. It is a Poisson
regression on the two log predictions (log link), so it reads them on the scale the booster fits them (the Tweedie
booster's margin is a log) and the weights are the elasticities of the blend in each. The floors ``f`` (1% of
each prediction's mean where the weights were fitted) keep a customer whom one model gives 0 from being sent to 0
by the other's weight.

Training (:func:`training.cltv_model.fit_spend_blend`) fits the numbers stored in the bundle's metadata
(``meta.spend_blend``); batch scoring and serving apply them here, so both compute the same spend.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict


class SpendBlend(BaseModel):
    """The fitted blend of the booster's spend and BG/NBD + Gamma-Gamma's (see the module docstring).

    Attributes:
        intercept: ``c``.
        booster_weight: ``w_b`` (>= 0).
        btyd_weight: ``w_g`` (>= 0).
        booster_floor: ``f_b`` (> 0), in the spend's units.
        btyd_floor: ``f_g`` (> 0), in the spend's units.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: float
    booster_weight: float
    btyd_weight: float
    booster_floor: float
    btyd_floor: float

    def apply(self, booster: np.ndarray, btyd: np.ndarray) -> np.ndarray:
        """The blended spend for the booster's predictions and the BTYD spend of the same rows (both >= 0)."""
        z = log_inputs(clean(booster), clean(btyd), (self.booster_floor, self.btyd_floor))
        return np.exp(self.intercept + z @ np.array([self.booster_weight, self.btyd_weight]))


def clean(prediction: np.ndarray) -> np.ndarray:
    """A prediction as the blend reads it: float64, NaN (no purchase yet) and negatives as 0."""
    return np.maximum(np.nan_to_num(np.asarray(prediction, dtype=np.float64), nan=0.0), 0.0)


def log_inputs(booster: np.ndarray, btyd: np.ndarray, floors: tuple[float, float]) -> np.ndarray:
    """The blend's regressors, one column each: ``log(booster + f_b)``, ``log(btyd + f_g)`` (cleaned predictions)."""
    return np.column_stack([np.log(booster + floors[0]), np.log(btyd + floors[1])])
