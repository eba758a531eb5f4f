"""Next-best-offer uplift model: an XGBoost S-learner over ``[X | one-hot(offer)]``.

One booster models the outcome under every arm (control and each offer). At serving
time all arms for one customer are scored with a single ``booster.inplace_predict``
on :meth:`OfferUpliftModel.all_arms_matrix`, built on
:meth:`OfferUpliftModel.design_matrix`, the only implementation of the treatment
encoding, so training and serving cannot drift apart. Serving needs only
``booster_`` and ``offers_`` (and ``has_control_``) from a fitted model.

Known S-learner caveat: the trees are not forced to split on the treatment columns,
so effects that are small relative to the feature signal are shrunk towards zero
(on the planted test data the largest effect, +0.15, is recovered as about +0.13).
Rankings between offers are affected much less than absolute uplift values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator

from features.scoring import design_matrix as shared_design_matrix

_SUPPORTED_OBJECTIVES = ("binary:logistic", "reg:tweedie")


class OfferUpliftModel(BaseEstimator):
    """S-learner uplift model over a discrete set of offers.

    The booster's input is the customer features followed by a one-hot block with one
    column per treatment (offer); the control arm is the all-zero block. The predicted
    uplift of an offer is ``f(x, offer) - f(x, control)``.

    Attributes:
        offers_: Sorted treatment ids (control excluded); column ``j`` of the one-hot
            block, of :meth:`predict_uplift` and column ``j + 1`` of
            :meth:`predict_outcomes` all refer to ``offers_[j]``.
        has_control_: Whether training data contained control rows.
        n_features_in_: Number of customer features (excluding the one-hot block).
        booster_: The trained ``xgboost.Booster``.
    """

    def __init__(
        self,
        control: str = "none",
        n_estimators: int = 300,
        max_depth: int = 4,
        learning_rate: float = 0.05,
        seed: int = 0,
        objective: str = "binary:logistic",
    ) -> None:
        self.control = control
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.seed = seed
        self.objective = objective

    @staticmethod
    def design_matrix(X: np.ndarray, offer_index: np.ndarray | int, n_offers: int) -> np.ndarray:
        """Build the booster input ``[X | one-hot(offer)]``.

        Validates, then delegates to :func:`features.scoring.design_matrix`, the single
        implementation of the treatment encoding shared with batch scoring and serving. ``n_offers`` is explicit
        (``len(offers_)``) rather than inferred from ``offer_index`` because a batch may
        not contain the highest-indexed offer.

        Args:
            X: Customer features, shape ``(n, n_features)``.
            offer_index: Arm index per row, shape ``(n,)``, or a scalar for all rows:
                ``-1`` for control, ``j`` in ``[0, n_offers)`` for ``offers_[j]``.
            n_offers: Number of treatments, i.e. ``len(offers_)``.

        Returns:
            float32 array of shape ``(n, n_features + n_offers)``.

        Raises:
            ValueError: If ``X`` is not 2-D or an index is out of range.
        """
        X = _as_2d_float(X)
        idx = np.broadcast_to(np.asarray(offer_index, dtype=np.int64), (X.shape[0],))
        if idx.size and (idx.min() < -1 or idx.max() >= n_offers):
            raise ValueError(f"offer_index must lie in [-1, {n_offers})")
        return shared_design_matrix(X, n_offers, idx)

    @staticmethod
    def all_arms_matrix(X: np.ndarray, n_offers: int) -> np.ndarray:
        """Stack every arm for every customer so one ``inplace_predict`` scores them all.

        Rows are arm-major: the ``n`` customers under control, then under ``offers_[0]``,
        and so on. Predictions ``p`` therefore reshape as ``p.reshape(n_offers + 1, n).T``
        into columns ``[control, offers_[0], ...]``. For a single customer this is the
        ``(n_offers + 1) x (n_features + n_offers)`` serving matrix.

        Args:
            X: Customer features, shape ``(n, n_features)``.
            n_offers: Number of treatments, i.e. ``len(offers_)``.

        Returns:
            float32 array of shape ``((n_offers + 1) * n, n_features + n_offers)``.
        """
        X = _as_2d_float(X)
        arms = np.repeat(np.arange(-1, n_offers, dtype=np.int64), X.shape[0])
        return OfferUpliftModel.design_matrix(np.tile(X, (n_offers + 1, 1)), arms, n_offers)

    def fit(
        self,
        X: np.ndarray,
        offer: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> OfferUpliftModel:
        """Train the booster on logged (ideally randomized) offer assignments.

        Args:
            X: Customer features, shape ``(n, n_features)``.
            offer: Offer id per row (strings); rows equal to ``control`` are control.
            y: Outcome per row (0/1 for ``binary:logistic``, non-negative revenue for
                ``reg:tweedie``).
            sample_weight: Optional per-row weights, e.g. inverse propensities when the
                logging policy was not uniformly random.

        Returns:
            The fitted model.

        Raises:
            ValueError: On shape mismatch, unsupported objective or no treated rows.
        """
        if self.objective not in _SUPPORTED_OBJECTIVES:
            raise ValueError(f"objective must be one of {_SUPPORTED_OBJECTIVES}, got {self.objective!r}")
        X = _as_2d_float(X)
        offer = np.asarray(offer).astype(str)
        y = np.asarray(y, dtype=np.float64)
        if offer.shape != (X.shape[0],) or y.shape != (X.shape[0],):
            raise ValueError("X, offer and y must have the same number of rows")

        is_control = offer == self.control
        offers = np.unique(offer[~is_control])
        if offers.size == 0:
            raise ValueError("no treated rows: need at least one offer other than the control")
        self.offers_: np.ndarray = offers
        self.has_control_: bool = bool(is_control.any())
        self.n_features_in_: int = X.shape[1]

        # searchsorted is safe because offers_ is sorted and every non-control id is in it.
        idx = np.where(is_control, -1, np.searchsorted(offers, offer))
        dtrain = xgb.DMatrix(self.design_matrix(X, idx, offers.size), label=y, weight=sample_weight)
        self.booster_: xgb.Booster = xgb.train(
            self._params(), dtrain, num_boost_round=self.n_estimators, verbose_eval=False
        )
        return self

    def _params(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "seed": self.seed,
            "nthread": 2,
            "tree_method": "hist",
            # Column subsampling could drop the few treatment columns from whole trees and
            # shrink the estimated uplift towards zero, so every tree sees every column.
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "colsample_bylevel": 1.0,
            "colsample_bynode": 1.0,
        }

    def predict_outcomes(self, X: np.ndarray) -> np.ndarray:
        """Predict the outcome of each customer under control and under every offer.

        Args:
            X: Customer features, shape ``(n, n_features)``.

        Returns:
            Array of shape ``(n, 1 + n_offers)``: column 0 is the outcome under control
            (all NaN when the model was trained without control rows, since that arm was
            never observed), column ``j + 1`` the outcome under ``offers_[j]``.
        """
        self._check_fitted()
        X = _as_2d_float(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        n, k = X.shape[0], self.offers_.size
        pred = np.asarray(self.booster_.inplace_predict(self.all_arms_matrix(X, k)), dtype=np.float64)
        out = pred.reshape(k + 1, n).T.copy()
        if not self.has_control_:
            out[:, 0] = np.nan
        return out

    def predict_uplift(self, X: np.ndarray) -> np.ndarray:
        """Predict the incremental outcome of each offer over control.

        When the model was trained without control rows (``has_control_`` is False) no
        counterfactual baseline exists, so this falls back to the raw predicted outcome
        under each offer (a propensity-style score): rankings between offers remain
        meaningful, but values are not increments and will overstate the gain.

        Args:
            X: Customer features, shape ``(n, n_features)``.

        Returns:
            Array of shape ``(n, n_offers)``, column ``j`` for ``offers_[j]``.
        """
        outcomes = self.predict_outcomes(X)
        if not self.has_control_:
            return outcomes[:, 1:]
        return outcomes[:, 1:] - outcomes[:, :1]

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise RuntimeError("OfferUpliftModel is not fitted; call fit() first")


def _as_2d_float(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    return X
