"""Request and response bodies of the HTTP API (CONTRACT §4), as pydantic models.

The request models are what BentoML validates each body against (a failure is a 400 with the pydantic error
list); the response models document the answers in the OpenAPI spec (``GET /docs.json``) and in tests.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

#: Most customer ids one batch call may carry.
MAX_BATCH = 1000

FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | str | None


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
        default_factory=dict, description="where the decision happens, e.g. the channel; logged with the decision"
    )
    features: dict[str, FeatureValue] | None = Field(
        default=None,
        description="feature values that replace the stored ones; for an unknown id they are the whole row",
    )


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
    value: Annotated[float, Field(allow_inf_nan=False)] | None = Field(default=None, description="optional amount")


class Reason(BaseModel):
    """One feature pushing the churn score up."""

    feature: str
    description: str
    value: float | None = Field(description="the customer's value; null when missing or beyond float32's range")
    contribution: float = Field(description="SHAP contribution in log-odds")


class ChurnPart(BaseModel):
    """Churn risk."""

    available: bool = True
    probability: float | None = Field(default=None, description="calibrated probability of churn within horizon")
    risk_band: str | None = Field(default=None, description="low, medium or high")
    reasons: list[Reason] = Field(default_factory=list)
    horizon_days: int | None = None
    reason: str | None = Field(default=None, description="why the part is unavailable")


class CltvPart(BaseModel):
    """Spend over the horizon and value over the CLTV horizon."""

    available: bool = True
    predicted_spend: float | None = None
    horizon_days: int | None = None
    value: float | None = None
    value_horizon_days: int | None = None
    method: str | None = None
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
    offer_id: str | None = None
    expected_value: float | None = None
    ranking: list[OfferScore] = Field(default_factory=list)
    method: str | None = Field(default=None, description="uplift, or propensity when offers had no control arm")
    reason: str | None = None
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
                        }
                    ],
                },
                "cltv": {
                    "available": True,
                    "predicted_spend": 42.0,
                    "horizon_days": 90,
                    "value": 160.0,
                    "value_horizon_days": 365,
                    "method": "xgboost",
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
    """Acknowledgement of a feedback record."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {"decision_id": "3f0c2a0b9d1e4f7a8b6c5d4e3f2a1b0c", "outcome": "converted", "recorded": True}
        }
    )

    decision_id: str
    outcome: str
    recorded: bool


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
