"""Request and response bodies of the HTTP API (CONTRACT §4), as pydantic models.

The request models are what each route validates its body against (:func:`serving.http.parse`). The answer
(:class:`PersonalizeResponse`, its parts from :mod:`features.kinds`) is a ``TypedDict``: the runtime builds every
answer as it (a plain dict, cheap on the request path) and the OpenAPI spec (``GET /docs.json``) publishes its schema.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, NotRequired

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    with_config,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from features.kinds import CHURN, CLTV, NEXT_BEST_OFFER
from features.kinds.churn import ChurnPart
from features.kinds.cltv import CltvPart
from features.kinds.next_best_offer import NextBestOfferPart

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


class ExperimentInfo(TypedDict):
    """The experiment this answer belongs to and the customer's arm in it."""

    name: str
    variant: Annotated[str, Field(description="the arm: a registry alias or version, or `holdout`")]
    holdout: bool


@with_config(
    ConfigDict(
        json_schema_extra={
            "example": {
                "customer_id": "c1",
                CHURN.name: {
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
                CLTV.name: {
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
                NEXT_BEST_OFFER.name: {
                    "available": True,
                    "offer_id": "discount10",
                    "expected_value": 3.2,
                    "method": "uplift",
                    "ranking": [{"offer_id": "discount10", "expected_value": 3.2, "uplift": 0.05, "p_accept": 0.2}],
                },
                "model_versions": {CHURN.name: 3, CLTV.name: 2, NEXT_BEST_OFFER.name: 1},
                "decision_id": "3f0c2a0b9d1e4f7a8b6c5d4e3f2a1b0c",
                "as_of": "2024-04-01T00:00:00",
                "experiment": {"name": "nbo-v4", "variant": "challenger", "holdout": False},
            }
        }
    )
)
class PersonalizeResponse(TypedDict):
    """The answer for one customer (the part endpoints carry only their part): built as this, published as this."""

    customer_id: str
    churn: NotRequired[ChurnPart]
    cltv: NotRequired[CltvPart]
    next_best_offer: NotRequired[NextBestOfferPart]
    model_versions: dict[str, int]
    decision_id: str
    as_of: Annotated[str | None, Field(description="cut-off of the stored features (null for a pure cold start)")]
    experiment: Annotated[ExperimentInfo | None, Field(description="set while an experiment covers the request")]


class BatchItemError(TypedDict):
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
