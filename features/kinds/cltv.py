"""The CLTV kind: predicted spend over the horizon, value over the CLTV horizon, activity and drivers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from typing_extensions import TypedDict

from features import btyd
from features.btyd_inputs import WithBtydInputs
from features.kinds.base import BundleMeta, ModelKind, Reason, ScoreContext
from features.kinds.churn import CHURN
from features.scoring import Bundle
from features.spend_blend import SpendBlend

#: Columns of a feature row the CLTV answer reads besides the model inputs (float64, not the float32 matrix).
CLTV_SUMMARY = ("monetary_total", "avg_order_value", "bg_frequency", "bg_recency_days", "bg_age_days")
#: The booster of the long-horizon value, beside ``main`` (spend over the horizon), when it has its own model.
VALUE_BOOSTER = "cltv"


def summary_columns(rows: Any) -> dict[str, np.ndarray]:
    """The :data:`CLTV_SUMMARY` columns of feature rows (a pandas frame or a sequence of mappings) as float64.

    Missing columns or values are NaN.
    """
    if hasattr(rows, "columns"):
        n = len(rows)
        return {
            c: (rows[c].astype("float64").to_numpy() if c in rows.columns else np.full(n, math.nan))
            for c in CLTV_SUMMARY
        }
    out = {}
    for c in CLTV_SUMMARY:
        values = [row.get(c) for row in rows]
        out[c] = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return out


class CltvMeta(BundleMeta):
    """A CLTV bundle's metadata.

    Attributes:
        cltv_horizon_days: Horizon of the long-run value.
        cltv_method: ``model`` (a booster on observed long windows) or ``btyd_ratio`` (the horizon spend scaled).
        cltv_scale: The BG/NBD + Gamma-Gamma ratio of long-run to horizon value (``btyd_ratio``).
        spend_scale: Total-calibration factor of the spend predictions, ``spend_balance * spend_season``
            (``spend_scale_note`` says how); 1 in older bundles.
        spend_balance: The part that makes the fit's total over its training rows equal theirs.
        spend_season: The part that sets the level for the target window's season (a back-test a year earlier).
        spend_scale_note: How ``spend_scale`` was found.
        spend_blend: The blend of the booster's spend with BG/NBD + Gamma-Gamma's (:mod:`features.spend_blend`),
            applied before ``spend_scale``; ``None``: the booster's alone.
        bgnbd: The BG/NBD fit (:class:`features.btyd.BGParams` plus ``degenerate``), for ``p_alive`` and orders.
        mean_order_value: The training population's average purchase value (the expected-orders fallback).
        btyd_inputs: BG/NBD (plus ``horizon_days``) and Gamma-Gamma parameters fitted on the training snapshots,
            whose per-customer P(alive), expected orders and expected spend the boosters read after the feature
            table's columns (:func:`features.btyd_inputs.btyd_inputs`); ``None``: the feature table alone.
    """

    cltv_horizon_days: int | None = None
    cltv_method: Literal["model", "btyd_ratio"] | None = None
    cltv_scale: float | None = None
    spend_scale: float = 1.0
    spend_balance: float = 1.0
    spend_season: float = 1.0
    spend_scale_note: str | None = None
    spend_blend: SpendBlend | None = None
    bgnbd: dict[str, Any] | None = None
    mean_order_value: float | None = None
    btyd_inputs: dict[str, Any] | None = None


class CltvPart(TypedDict, total=False):
    """Spend over the horizon and value over the CLTV horizon."""

    available: bool
    predicted_spend: float | None
    horizon_days: int | None
    value: float | None
    value_horizon_days: int | None
    method: Annotated[
        Literal["model", "btyd_ratio"] | None,
        Field(
            description="model: a booster trained on observed long windows; btyd_ratio: the horizon spend scaled by "
            "the BG/NBD + Gamma-Gamma ratio (history shorter than the CLTV horizon)"
        ),
    ]
    historic_value: Annotated[float | None, Field(description="net spend before the as-of time (returns out)")]
    p_alive: Annotated[float | None, Field(description="probability that the customer is still active")]
    expected_orders: Annotated[float | None, Field(description="expected purchases over horizon_days")]
    activity_method: Annotated[
        Literal["bgnbd", "fallback"] | None,
        Field(
            description="bgnbd: p_alive and expected_orders from the customer's BG/NBD (Fader, Hardie & Lee 2005); "
            "fallback: BG/NBD cannot answer (a degenerate fit, or no purchase yet), so p_alive = 1 - churn "
            "probability and expected_orders = predicted_spend / average purchase value"
        ),
    ]
    drivers: Annotated[
        list[Reason],
        Field(description="the strongest factors pushing predicted_spend up, then those holding it down"),
    ]
    reason: str | None


def _float(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


@dataclass
class CltvBundle(WithBtydInputs, Bundle):
    """A CLTV model: spend over the horizon (``main``); value over the CLTV horizon by its own booster or a scale."""

    meta: CltvMeta  # type: ignore[assignment]
    meta_type: ClassVar[type[BundleMeta]] = CltvMeta

    def prepare_online(self) -> None:
        """Forests and SHAP tables (the drivers) before the first request."""
        super().prepare_online()
        self._predictor("main").prepare_contributions()

    @property
    def btyd_params(self) -> dict[str, Any] | None:
        """The BTYD inputs' parameters (:mod:`features.btyd_inputs`)."""
        return self.meta.btyd_inputs

    def unscaled_spend(self, inputs: np.ndarray) -> np.ndarray:
        """The spend over the horizon before ``spend_scale``: the booster's, blended where the bundle has a blend.

        Args:
            inputs: :meth:`inputs` of encoded rows.
        """
        booster = np.maximum(np.asarray(self._predictor("main").predict(inputs), dtype=np.float64), 0.0)
        blend, btyd_spend = self.meta.spend_blend, self.btyd_spend(inputs)
        if blend is None or btyd_spend is None:
            return booster
        return blend.apply(booster, btyd_spend)

    def spend(self, x: np.ndarray, inputs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted spend over the horizon and value over the CLTV horizon for encoded rows.

        ``inputs`` is :meth:`inputs` of ``x`` when the caller has it already (an answer computes it once).
        """
        xb = self.inputs(x) if inputs is None else inputs
        spend = self.unscaled_spend(xb)
        spend = spend * float(self.meta.spend_scale)
        if VALUE_BOOSTER in self.boosters:
            value = np.maximum(np.asarray(self._predictor(VALUE_BOOSTER).predict(xb), dtype=np.float64), 0.0)
        elif self.meta.cltv_scale is not None:
            value = spend * float(self.meta.cltv_scale)
        else:  # a spend model alone (training's back-test fits one): no long-horizon value
            value = np.full_like(spend, math.nan)
        return spend, value

    def cltv_answers(
        self,
        x: np.ndarray,
        summary: Mapping[str, np.ndarray],
        churn_probability: np.ndarray | None = None,
        inputs: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The complete CLTV answer for encoded rows (CONTRACT §2 "cltv").

        ``historic_value`` is the net spend before T; ``p_alive`` and ``expected_orders`` (over the horizon H) come
        from the per-customer BG/NBD (:mod:`features.btyd`, parameters fitted at training) where that fit is usable
        and the customer has bought. Elsewhere (a degenerate fit, e.g. P(alive) = 1 for everyone, or no purchase
        yet) they fall back: ``p_alive`` = 1 - churn probability (NaN without one), ``expected_orders`` = predicted
        spend over the customer's average purchase value (the training population's where they have none).

        Args:
            x: Encoded rows.
            summary: :func:`summary_columns` of the same rows.
            churn_probability: The churn model's answer for the rows, for the fallback.
            inputs: :meth:`inputs` of ``x`` when the caller has it already.

        Returns:
            Arrays ``predicted_spend``, ``value``, ``historic_value``, ``p_alive``, ``expected_orders`` and
            ``activity_method`` (``bgnbd`` or ``fallback`` per row).
        """
        spend, value = self.spend(x, inputs)
        n = x.shape[0]
        horizon = float(self.meta.horizon_days or 90)
        bg = self.meta.bgnbd
        alive = np.full(n, math.nan)
        orders = np.full(n, math.nan)
        if bg and not bg.get("degenerate", True):
            alive, orders = btyd.customer_answers(
                btyd.BGParams.from_json(bg),
                horizon,
                summary["bg_frequency"],
                summary["bg_recency_days"],
                summary["bg_age_days"],
            )
        use_bg = np.isfinite(alive) & np.isfinite(orders)
        aov = summary["avg_order_value"]
        mean_order_value = self.meta.mean_order_value
        aov = np.where(np.isfinite(aov) & (aov > 0), aov, math.nan if mean_order_value is None else mean_order_value)
        with np.errstate(divide="ignore", invalid="ignore"):
            orders = np.where(use_bg, orders, spend / aov)
        if churn_probability is not None:
            alive = np.where(use_bg, alive, 1.0 - np.asarray(churn_probability, dtype=np.float64))
        if self.cancelled(x).any():
            gone = self.cancelled(x)
            spend, value = np.where(gone, 0.0, spend), np.where(gone, 0.0, value)
            alive, orders = np.where(gone, 0.0, alive), np.where(gone, 0.0, orders)
        return {
            "predicted_spend": spend,
            "value": value,
            "historic_value": summary["monetary_total"],
            "p_alive": alive,
            "expected_orders": orders,
            "activity_method": np.where(use_bg, "bgnbd", "fallback"),
        }


class Cltv(ModelKind):
    """The CLTV kind."""

    name = "cltv"
    about = "Predicted spend over the horizon and value over the CLTV horizon"
    bundle_type = CltvBundle
    part = CltvPart
    columns = (
        "predicted_spend",
        "cltv",
        "historic_value",
        "p_alive",
        "expected_orders",
        "cltv_activity_method",
    )

    def score(self, bundle: CltvBundle, ctx: ScoreContext) -> list[CltvPart]:
        """The CLTV answer and its drivers per row; the churn model feeds the fallback where BG/NBD cannot answer."""
        x = ctx.matrix(self.name)
        inputs = bundle.inputs(x)
        ans = bundle.cltv_answers(x, summary_columns(ctx.rows), CHURN.probabilities(ctx), inputs)
        drivers = bundle.reasons(inputs)
        meta = bundle.meta
        return [
            CltvPart(
                available=True,
                predicted_spend=_float(ans["predicted_spend"][i]),
                horizon_days=meta.horizon_days,
                value=_float(ans["value"][i]),
                value_horizon_days=meta.cltv_horizon_days,
                method=meta.cltv_method,
                historic_value=_float(ans["historic_value"][i]),
                p_alive=_float(ans["p_alive"][i]),
                expected_orders=_float(ans["expected_orders"][i]),
                activity_method=str(ans["activity_method"][i]),  # type: ignore[typeddict-item]
                drivers=drivers[i],
            )
            for i in range(x.shape[0])
        ]

    def frame(self, bundle: CltvBundle, x: np.ndarray, frame: Any, known: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The CLTV answer's numbers as columns (``known["churn_probability"]`` feeds the fallback)."""
        ans = bundle.cltv_answers(x, summary_columns(frame), known.get("churn_probability"))
        return dict(
            zip(
                self.columns,
                (
                    ans["predicted_spend"],
                    ans["value"],
                    ans["historic_value"],
                    ans["p_alive"],
                    ans["expected_orders"],
                    ans["activity_method"],
                ),
                strict=True,
            )
        )


CLTV = Cltv()
