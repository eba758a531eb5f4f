"""Scoring and answers: feature rows in, each kind's answer part out, in the shape ``/docs.json`` publishes.

The parts come from the kinds (:data:`features.kinds.KINDS`), one model call per kind and generation for all rows;
the envelope is :class:`serving.schemas.PersonalizeResponse`; :func:`record` is what the decision log keeps of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from features.kinds import KINDS, NEXT_BEST_OFFER, ScoreContext
from features.schema import CONTROL_OFFER
from serving.decision_log import new_decision_id
from serving.generations import Models
from serving.routing import Route
from serving.schemas import PersonalizeResponse

#: Stored feature logged with every decision as the pre-period covariate of the A/B report (CUPED).
PRE_VALUE_FEATURE = "monetary_365d"


class Item(NamedTuple):
    """One customer to answer.

    Fields: its id, the feature row to score, the store's as-of (``None`` for a cold start), the caller's
    context and the name of the API key that asked (both logged with the decision).
    """

    customer_id: str
    row: dict[str, Any]
    as_of: str | None
    context: Mapping[str, Any]
    key_name: str | None = None


def score(models: Models, rows: Sequence[Mapping[str, Any]], parts: Iterable[str]) -> list[dict[str, Any]]:
    """Each requested kind's answer part for each row (``{kind name: part}``); one encoding per distinct encoder."""
    matrices: dict[int, np.ndarray] = {}

    def matrix(name: str) -> np.ndarray:
        i = models.encoder_of[name]
        if i not in matrices:
            matrices[i] = models.encoders[i].encode_rows(rows)
        return matrices[i]

    ctx = ScoreContext(rows, models.bundles, matrix)
    out: list[dict[str, Any]] = [{} for _ in rows]
    for name in parts:
        kind = KINDS[name]
        bundle = models.bundles.get(name)
        if bundle is None:
            why = models.absent.get(name, "model not loaded")
            for o in out:
                o[name] = kind.unavailable(why)
            continue
        for o, part in zip(out, kind.score(bundle, ctx), strict=True):
            o[name] = part
    return out


def answer(
    item: Item, scored: Mapping[str, Any], parts: Sequence[str], models: Models, route: Route
) -> PersonalizeResponse:
    """The answer for one customer: its parts, the versions that made them, a new decision id and the route."""
    return PersonalizeResponse(  # type: ignore[typeddict-item]
        customer_id=item.customer_id,
        **{p: scored[p] for p in parts},
        model_versions={p: models.versions[p] for p in parts if p in models.versions},
        decision_id=new_decision_id(),
        as_of=item.as_of,
        experiment=route.info(),
    )


def offer_shown(answer: Mapping[str, Any]) -> str | None:
    """The offer a decision showed: its id, the control arm when it showed none, None without an offer part."""
    offer = answer.get(NEXT_BEST_OFFER.name)
    if offer is None:
        return None
    if offer.get("holdout") or not offer.get("available") or offer.get("offer_id") is None:
        return CONTROL_OFFER
    return offer.get("offer_id")  # type: ignore[no-any-return]


def record(
    answer: Mapping[str, Any],
    row: Mapping[str, Any],
    route: Route,
    endpoint: str,
    context: Mapping[str, Any],
    ts: float,
) -> dict[str, Any]:
    """The decision-log record of one answer: the answer plus routing, propensity, offer shown and covariate."""
    return {
        **answer,
        "endpoint": endpoint,
        "context": dict(context),
        "ts": ts,
        # The served policy is deterministic given the arm, so the probability of this decision is the arm's share.
        "propensity": route.share,
        "offer_id": offer_shown(answer),
        "pre_value": row.get(PRE_VALUE_FEATURE),
    }
