"""Request and response bodies of the HTTP API (CONTRACT §4), as pydantic models.

The request models are what BentoML validates each body against (a failure is a 400 with the pydantic error
list); the response models document the answers in the OpenAPI spec (``GET /docs.json``) and in tests.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError

from features.scoring import CHURNED_BAND, RISK_BANDS

#: Most customer ids one batch call may carry.
MAX_BATCH = 1000
#: Largest magnitude of a feedback ``value`` (API and ``cxpredict ab ingest``): far above any real order amount, and
#: small enough that a report's sums, means and variances over millions of customers stay finite.
MAX_FEEDBACK_VALUE = 1e12

#: Most keys a request's ``context`` may have, and its largest size as compact JSON (it is logged with every
#: decision, so it must stay small).
MAX_CONTEXT_KEYS = 50
MAX_CONTEXT_BYTES = 4096


def _feature_value(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # true/false pass untouched: pydantic would read them as 1.0/0.0, and the runtime rejects them as 422
    # invalid_features naming the feature, like every other bad feature value.
    if isinstance(value, bool):
        return value
    try:
        return handler(value)
    except ValidationError:
        # A failed union reports every member ("should be a valid string" beside the real number error): one
        # message naming what is accepted reads better, under the feature's own name.
        if isinstance(value, float) and not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number") from None
        raise PydanticCustomError("feature_value", "Input should be a number, a string or null") from None


FeatureValue = Annotated[Annotated[float, Field(allow_inf_nan=False)] | str | None, WrapValidator(_feature_value)]


class PersonalizeRequest(BaseModel):
    """One customer to score: a known id, optionally with feature overrides (or all features, for a cold start)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "customer_id": "c1",
                "context": {"channel": "email"},
                "features": {"recency_days": 3, "frequency_total": 1},
            }
        },
    )

    customer_id: str = Field(min_length=1, max_length=128, description="the customer's id (a string)")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description=f"where the decision happens, e.g. the channel (at most {MAX_CONTEXT_KEYS} keys and "
        f"{MAX_CONTEXT_BYTES} bytes as compact JSON); only the keys in CXPREDICT_CONTEXT_KEYS (default channel, "
        "campaign, placement) are logged with the decision, others are dropped",
    )
    features: dict[str, FeatureValue] | None = Field(
        default=None,
        description="feature values (numbers, strings for attributes, or null) that replace the stored ones; for an "
        "unknown id they are the whole row (at least one feature: an empty object is no cold start)",
    )

    @field_validator("context")
    @classmethod
    def _context_small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_CONTEXT_KEYS:
            raise PydanticCustomError(
                "context_too_large",
                "context has {keys} keys; at most {limit} are logged with a decision",
                {"keys": len(value), "limit": MAX_CONTEXT_KEYS},
            )
        # Measured as the log stores it: UTF-8, not \u escapes (an "é" is 2 bytes there, not 6).
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
        if size > MAX_CONTEXT_BYTES:
            raise PydanticCustomError(
                "context_too_large",
                "context is {size} bytes as JSON; at most {limit} are logged with a decision",
                {"size": size, "limit": MAX_CONTEXT_BYTES},
            )
        return value


class BatchRequest(BaseModel):
    """Up to 1,000 known customers scored from their stored features."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"customer_ids": ["c1", "c2", "c3"]}})

    # The limit is checked by the endpoint (413, naming the limit), not by validation, so the client gets a
    # clear answer; the schema still advertises it.
    customer_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        min_length=1, json_schema_extra={"maxItems": MAX_BATCH}, description=f"1 to {MAX_BATCH} customer ids"
    )


class FeedbackRequest(BaseModel):
    """What happened after a decision: an outcome name and an optional value (revenue, margin...)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"decision_id": "3f0c2a0b9d1e4f7a8b6c5d4e3f2a1b0c", "outcome": "converted", "value": 12.5}
        },
    )

    decision_id: str = Field(min_length=1, max_length=64, description="the decision_id of an earlier answer")
    outcome: str = Field(min_length=1, max_length=64, description="what happened, e.g. converted, clicked, churned")
    # Strict: a JSON number only. true would otherwise be stored as 1.0 and "12.5" as 12.5.
    value: (
        Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_FEEDBACK_VALUE, le=MAX_FEEDBACK_VALUE)] | None
    ) = Field(
        default=None,
        description=f"optional amount (revenue, margin...): a finite JSON number between -{MAX_FEEDBACK_VALUE:.0e} "
        f"and {MAX_FEEDBACK_VALUE:.0e}",
    )


#: Every churn risk band, as :func:`features.scoring.risk_band` names them (defined there, once).
RISK_BAND_NAMES: tuple[str, ...] = (*(name for _, name in RISK_BANDS), CHURNED_BAND)


class Reason(BaseModel):
    """One feature pushing the score up, or holding it down."""

    feature: str
    description: str
    value: float | str | None = Field(
        description="the customer's value as they know it (a category's label, not its code); null when missing"
    )
    contribution: float | None = Field(
        description="SHAP contribution in the model's margin (log-odds for churn, log-spend for CLTV); null for a "
        "rule (a cancellation before T)"
    )
    direction: Literal["up", "down"] = Field(description="up: pushes the score up; down: holds it down")


class ChurnPart(BaseModel):
    """Churn risk."""

    available: bool = True
    probability: float | None = Field(default=None, description="calibrated probability of churn within horizon")
    risk_band: str | None = Field(
        default=None,
        description=f"{', '.join(RISK_BAND_NAMES[:-1])}; {CHURNED_BAND} for a customer cancelled before the as-of time "
        "(probability 1.0)",
        json_schema_extra={"enum": [*RISK_BAND_NAMES, None]},
    )
    reasons: list[Reason] = Field(
        default_factory=list, description="the strongest factors pushing the risk up, then those holding it down"
    )
    horizon_days: int | None = None
    reason: str | None = Field(default=None, description="why the part is unavailable")


class CltvPart(BaseModel):
    """Spend over the horizon and value over the CLTV horizon."""

    available: bool = True
    predicted_spend: float | None = None
    horizon_days: int | None = None
    value: float | None = None
    value_horizon_days: int | None = None
    method: Literal["model", "btyd_ratio"] | None = Field(
        default=None,
        description="model: a booster trained on observed long windows; btyd_ratio: the horizon spend scaled by the "
        "BG/NBD + Gamma-Gamma ratio (history shorter than the CLTV horizon)",
    )
    historic_value: float | None = Field(default=None, description="net spend before the as-of time (returns out)")
    p_alive: float | None = Field(default=None, description="probability that the customer is still active")
    expected_orders: float | None = Field(default=None, description="expected purchases over horizon_days")
    activity_method: Literal["bgnbd", "fallback"] | None = Field(
        default=None,
        description="bgnbd: p_alive and expected_orders from the customer's BG/NBD (Fader, Hardie & Lee 2005); "
        "fallback: BG/NBD cannot answer (a degenerate fit, or no purchase yet), so p_alive = 1 - churn probability "
        "and expected_orders = predicted_spend / average purchase value",
    )
    drivers: list[Reason] = Field(
        default_factory=list, description="the strongest factors pushing predicted_spend up, then those holding it down"
    )
    reason: str | None = None


class OfferScore(BaseModel):
    """One eligible offer in the ranking."""

    offer_id: str
    expected_value: float
    uplift: float
    p_accept: float


class NextBestOfferPart(BaseModel):
    """The offer with the highest expected incremental value, with the full ranking."""

    available: bool = True
    offer_id: str | None = Field(
        default=None,
        description="the offer to show; null when none is available or, with the uplift method, when no eligible "
        "offer's expected value is above 0 (showing none is worth more; `reason` says so, `ranking` still lists them)",
    )
    expected_value: float | None = Field(
        default=None, description="expected incremental value of showing `offer_id` (0.0 when showing none)"
    )
    ranking: list[OfferScore] = Field(default_factory=list)
    method: str | None = Field(
        default=None,
        description="uplift, or propensity when offers had no control arm; with ', best single offer for all' "
        "where training found that the per-customer policy does not beat one offer for all",
    )
    reason: Literal["holdout", "opted_out", "contact_cap", "no_positive_value"] | None = Field(
        default=None,
        description="why no offer is made (contact policy, in this order: holdout, opted_out, contact_cap, then "
        "no_positive_value); null when `offer_id` is set",
    )
    detail: str | None = Field(default=None, description="the reason (or why the part is unavailable) in words")
    holdout: bool = Field(default=False, description="the customer is in an experiment's holdout: show no offer")


class ExperimentInfo(BaseModel):
    """The experiment this answer belongs to and the customer's arm in it."""

    name: str
    variant: str = Field(description="the arm: a registry alias or version, or `holdout`")
    holdout: bool = False


class PersonalizeResponse(BaseModel):
    """The answer for one customer (the part endpoints carry only their part)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "customer_id": "c1",
                "churn": {
                    "available": True,
                    "probability": 0.71,
                    "risk_band": "high",
                    "horizon_days": 90,
                    "reasons": [
                        {
                            "feature": "recency_days",
                            "description": "days since the last purchase",
                            "value": 120.0,
                            "contribution": 0.8,
                            "direction": "up",
                        }
                    ],
                },
                "cltv": {
                    "available": True,
                    "predicted_spend": 42.0,
                    "horizon_days": 90,
                    "value": 160.0,
                    "value_horizon_days": 365,
                    "method": "model",
                    "historic_value": 310.5,
                    "p_alive": 0.64,
                    "expected_orders": 1.2,
                    "activity_method": "bgnbd",
                },
                "next_best_offer": {
                    "available": True,
                    "offer_id": "discount10",
                    "expected_value": 3.2,
                    "method": "uplift",
                    "ranking": [{"offer_id": "discount10", "expected_value": 3.2, "uplift": 0.05, "p_accept": 0.2}],
                },
                "model_versions": {"churn": 3, "cltv": 2, "next_best_offer": 1},
                "decision_id": "3f0c2a0b9d1e4f7a8b6c5d4e3f2a1b0c",
                "as_of": "2024-04-01T00:00:00",
                "experiment": {"name": "nbo-v4", "variant": "challenger", "holdout": False},
            }
        }
    )

    customer_id: str
    churn: ChurnPart | None = None
    cltv: CltvPart | None = None
    next_best_offer: NextBestOfferPart | None = None
    model_versions: dict[str, int]
    decision_id: str
    as_of: str | None = Field(description="cut-off of the stored features (null for a pure cold start)")
    experiment: ExperimentInfo | None = Field(default=None, description="set while an experiment covers the request")


class BatchItemError(BaseModel):
    """A batch entry that could not be scored."""

    customer_id: str
    error: str
    detail: str


class BatchResponse(BaseModel):
    """Answers in request order; unknown ids get an error entry instead of failing the batch."""

    model_config = ConfigDict(json_schema_extra={"example": {"results": [], "count": 0}})

    results: list[PersonalizeResponse | BatchItemError]
    count: int


class FeedbackResponse(BaseModel):
    """Acknowledgement of a feedback record.

    Feedback is idempotent per (decision, outcome): the first record wins. A repeat is answered 200 with
    ``recorded`` true (the outcome is on record) and ``duplicate`` true, and ``stored_value`` is the earlier
    record's value (a different value sent again was discarded).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "decision_id": "3f0c2a0b9d1e4f7a8b6c5d4e3f2a1b0c",
                "outcome": "converted",
                "recorded": True,
                "duplicate": False,
                "stored_value": 12.5,
            }
        }
    )

    decision_id: str
    outcome: str
    recorded: bool = Field(
        description="the outcome is on record for the decision (also for a repeat: feedback is idempotent)"
    )
    duplicate: bool = Field(
        default=False,
        description="an earlier record of this (decision, outcome) exists and stands; this one is ignored",
    )
    stored_value: float | None = Field(
        default=None, description="the value on record for the (decision, outcome): the earlier one for a duplicate"
    )


class ErrorResponse(BaseModel):
    """Every error: a short machine-readable code and a human-readable detail."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": "unknown_customer",
                "detail": "customer_id 'x' is not in the online store; send `features` to score it anyway",
            }
        }
    )

    error: str
    detail: Any = None
