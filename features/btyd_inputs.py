"""The BTYD quantities a booster reads beside the feature table, numpy only (churn and CLTV alike).

The churn booster reads each customer's P(alive) and expected orders over the horizon under a BG/NBD model (Fader,
Hardie & Lee 2005) fitted on the training snapshots; the CLTV booster reads those and the expected spend over the
horizon, the expected orders times the Gamma-Gamma conditional spend per purchase (Fader, Hardie & Lee 2005,
"RFM and CLV"). They are parametric summaries of the purchase process that shallow trees would otherwise piece
together from frequency, recency, age and average value, and a product (orders x value) trees approximate poorly.
All are functions of registry features (point-in-time like every feature) and the fitted parameters stored in
the bundle, so they are computed at scoring time from the same encoded row, offline and online.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from features.btyd import BGParams, GGParams, customer_answers, no_purchase_probability
from features.churn_blend import logit

if TYPE_CHECKING:  # the kinds import this module: the type only, no import cycle
    from features.kinds.base import Reason

#: The registry features BG/NBD reads: repeat purchase days, first to last purchase day, first purchase day to T.
BGNBD_SUMMARY = ("bg_frequency", "bg_recency_days", "bg_age_days")
#: The registry feature Gamma-Gamma reads beside ``bg_frequency``: the customer's mean spend per purchase.
ORDER_VALUE = "avg_order_value"
#: The BG/NBD inputs, after the feature table's columns (:func:`bgnbd_inputs`).
BGNBD_INPUTS = ("bg_alive_logit", "bg_expected_orders_log1p")
#: The spend input, after the BG/NBD ones where the parameters hold a Gamma-Gamma fit (:func:`btyd_inputs`).
SPEND_INPUT = "btyd_expected_spend_log1p"
#: Key of the Gamma-Gamma parameters in the inputs' parameters.
GAMMA_GAMMA = "gamma_gamma"
#: What each input means (reasons name them like features and show the value untransformed).
DESCRIPTIONS = {
    "bg_alive_logit": "Probability the customer is still active (BG/NBD)",
    "bg_expected_orders_log1p": "Expected purchase days over the horizon (BG/NBD)",
    SPEND_INPUT: "Expected spend over the horizon (BG/NBD + Gamma-Gamma)",
}


def input_names(params: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The inputs computed from ``params`` (none without them; the spend one where they hold a Gamma-Gamma fit)."""
    if not params:
        return ()
    return (*BGNBD_INPUTS, SPEND_INPUT) if params.get(GAMMA_GAMMA) else BGNBD_INPUTS


def _bgnbd_answers(x: np.ndarray, columns: Sequence[str], bgnbd: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    idx = [list(columns).index(c) for c in BGNBD_SUMMARY]
    summary = np.asarray(x[:, idx], dtype=np.float64)
    return customer_answers(
        BGParams.from_json(bgnbd), float(bgnbd["horizon_days"]), summary[:, 0], summary[:, 1], summary[:, 2]
    )


def no_purchase_logit(x: np.ndarray, columns: Sequence[str], bgnbd: Mapping[str, Any]) -> np.ndarray:
    """Log-odds of BG/NBD's P(no purchase over the horizon) per encoded row: its churn probability.

    See :func:`features.btyd.no_purchase_probability`; NaN for a row without a purchase (BG/NBD starts at the first).

    Args:
        x: Encoded rows (the feature table's columns).
        columns: Their names.
        bgnbd: Fitted parameters and ``horizon_days`` (as for :func:`bgnbd_inputs`).
    """
    idx = [list(columns).index(c) for c in BGNBD_SUMMARY]
    summary = np.asarray(x[:, idx], dtype=np.float64)
    p = no_purchase_probability(
        BGParams.from_json(bgnbd), float(bgnbd["horizon_days"]), summary[:, 0], summary[:, 1], summary[:, 2]
    )
    return np.where(np.isnan(p), np.nan, logit(np.nan_to_num(p, nan=0.5)))


def bgnbd_inputs(x: np.ndarray, columns: Sequence[str], bgnbd: Mapping[str, Any]) -> np.ndarray:
    """Log-odds of P(alive) and log1p of the expected orders over the horizon per encoded row.

    P(alive) is taken on the log-odds scale (clipped to [1e-6, 1 - 1e-6]) because the booster's inputs are float32:
    on a business where BG/NBD sees almost no dropout every P(alive) lies within 1e-4 of 1 and float32 would merge
    them. A customer without a purchase is alive under BG/NBD (dropout happens only after a purchase); the
    expected orders are NaN for them (missing to the booster).

    Args:
        x: Encoded rows (the feature table's columns).
        columns: Their names.
        bgnbd: Fitted parameters (:meth:`features.btyd.BGParams.to_json`) and ``horizon_days``, the horizon of the
            expected orders (the model's horizon H).

    Returns:
        Two columns, in the order of :data:`BGNBD_INPUTS`, in the dtype of ``x``.
    """
    alive, orders = _bgnbd_answers(x, columns, bgnbd)
    return np.column_stack([logit(np.nan_to_num(alive, nan=1.0)), np.log1p(orders)]).astype(x.dtype, copy=False)


def btyd_inputs(x: np.ndarray, columns: Sequence[str], params: Mapping[str, Any]) -> np.ndarray:
    """The inputs :func:`input_names` names, per encoded row.

    The spend input is ``log1p(E[orders over H] * E[spend per purchase])``: the Gamma-Gamma conditional mean of a
    customer with ``bg_frequency`` repeat purchase days and mean purchase value ``avg_order_value`` (the
    population's mean where they have neither); NaN (missing) where the expected orders are.

    Args:
        x: Encoded rows (the feature table's columns).
        columns: Their names.
        params: The BG/NBD parameters (as for :func:`bgnbd_inputs`), with the Gamma-Gamma's
            (:meth:`features.btyd.GGParams.to_json`) under :data:`GAMMA_GAMMA` for the spend input.
    """
    base = bgnbd_inputs(x, columns, params)
    if not params.get(GAMMA_GAMMA):
        return base
    frequency = np.asarray(x[:, list(columns).index(BGNBD_SUMMARY[0])], dtype=np.float64)
    value = np.asarray(x[:, list(columns).index(ORDER_VALUE)], dtype=np.float64)
    per_order = GGParams.from_json(params[GAMMA_GAMMA]).expected_average(frequency, value)
    spend = np.expm1(base[:, 1].astype(np.float64)) * per_order
    return np.column_stack([base, np.log1p(np.maximum(spend, 0.0))]).astype(x.dtype, copy=False)


def btyd_reason(name: str, value: float, contribution: float | None, direction: Any) -> Reason:
    """A BTYD input's reason, its value on the scale a user reads (a probability, orders, spend)."""
    shown = None
    if not np.isnan(value):
        shown = round(float(1 / (1 + np.exp(-value)) if name == BGNBD_INPUTS[0] else np.expm1(value)), 4)
    return {
        "feature": name,
        "description": DESCRIPTIONS[name],
        "value": shown,
        "contribution": contribution,
        "direction": direction,
    }


class WithBtydInputs:
    """A bundle whose booster reads the BTYD inputs after the feature table's columns (mixed in before ``Bundle``).

    The bundle says which parameters (:attr:`btyd_params`); without them its booster reads the feature table alone.
    """

    encoder: Any

    @property
    def btyd_params(self) -> Mapping[str, Any] | None:
        """The fitted parameters of the inputs (``None``: none)."""
        raise NotImplementedError

    @property
    def input_columns(self) -> list[str]:
        """The booster's inputs: the encoder's columns, then the BTYD ones."""
        return [*self.encoder.columns, *input_names(self.btyd_params)]

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """The booster's input matrix for encoded rows ``x`` (``x`` itself without BTYD parameters)."""
        params = self.btyd_params
        if not params:
            return x
        return np.hstack([x, btyd_inputs(x, self.encoder.columns, params)])

    def btyd_spend(self, inputs: np.ndarray) -> np.ndarray | None:
        """The BG/NBD + Gamma-Gamma expected spend over the horizon per row of :meth:`inputs` (``None``: not an input).

        NaN where the expected orders are (as the input itself).
        """
        names = input_names(self.btyd_params)
        if SPEND_INPUT not in names:
            return None
        j = len(self.encoder.columns) + names.index(SPEND_INPUT)
        return np.expm1(np.asarray(inputs[:, j], dtype=np.float64))

    def _reason(self, j: int, value: float, contribution: float | None, direction: Any) -> Reason:
        """A feature's reason, or a BTYD input's (after the encoder's columns) with its value as computed."""
        n = len(self.encoder.columns)
        if j < n:
            return super()._reason(j, value, contribution, direction)  # type: ignore[misc]
        return btyd_reason(input_names(self.btyd_params)[j - n], value, contribution, direction)
