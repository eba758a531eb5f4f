"""The next-best-offer kind: every eligible offer ranked by expected incremental value, and the one to show."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field
from typing_extensions import TypedDict

from features.eligibility import Rule, compile_rule
from features.kinds.base import BundleMeta, ModelKind, ScoreContext
from features.scoring import Bundle, design_matrix

NO_OFFER_PAYS = "no eligible offer is expected to earn more than it costs: showing none is worth more"
NONE_ELIGIBLE = "no offer in the catalog is eligible for this customer"
#: The served policy when training found that one offer for all beats the per-customer ranking.
BEST_SINGLE = "best_single"
#: What an offer model values: acceptance (times the catalog's value) or the spend the offer brings.
OfferOutcome = Literal["accepted", "revenue"]
#: The candidate name's suffix of a spend model (``t_spend``: the T-learner's acceptance x the order value).
SPEND_SUFFIX = "_spend"
#: The booster of a spend model's order value (the spend of an accepted offer, per customer and arm).
ORDER_VALUE = "order_value"
#: Why no offer is made (contact policy, in this order, then the value), as the answer's ``reason`` says it.
NoOfferReason = Literal["holdout", "opted_out", "contact_cap", "no_positive_value"]


class OfferEntry(TypedDict, total=False):
    """One catalog offer as the bundle keeps it."""

    offer_id: str
    value: float
    cost: float
    eligible_if: Any


class OfferMeta(BundleMeta):
    """A next-best-offer bundle's metadata.

    Attributes:
        offers: The catalog the model scores, in booster order.
        has_control: Whether offers had a control arm (uplift); else acceptance propensity is the fallback.
        method: How the answer was reached, said in it (``uplift``, ``propensity``, ``..., best single offer...``).
        policy: ``learned`` (per customer) or ``best_single`` (one offer for all, by ``average_uplift``).
        policy_reason: Why training chose that policy.
        average_uplift: Each offer's mean uplift (read under ``best_single``).
        layout: ``s`` (one booster over customer x offer) or ``effect`` (T-, X- or DR-learner boosters).
        learner: Which learner fitted the boosters.
        x_weights: The X-learner's weights per offer.
        outcome: What the model values: ``accepted`` (an offer's value saved is its uplift in acceptance times
            the catalog's value, minus its cost) or ``revenue`` (spend, a two-part model: the acceptance boosters
            times the ``order_value`` booster's spend per accepted offer; the value saved is the uplift in spend,
            already money, minus the cost).
    """

    offers: list[OfferEntry] = Field(default_factory=list)
    has_control: bool = False
    method: str | None = None
    policy: str | None = None
    policy_reason: str | None = None
    average_uplift: dict[str, float] | None = None
    layout: str | None = None
    learner: str | None = None
    x_weights: list[float] | None = None
    outcome: OfferOutcome = "accepted"

    @property
    def candidate(self) -> str:
        """The candidate's name in training metrics: the learner, with ``_spend`` where it models spend."""
        return f"{self.learner}{SPEND_SUFFIX}" if self.outcome == "revenue" else str(self.learner)

    def unit_values(self) -> np.ndarray:
        """What one unit of the modelled outcome is worth, per offer: the catalog's value, or 1 for spend."""
        if self.outcome == "revenue":
            return np.ones(len(self.offers))
        return np.array([float(o["value"]) for o in self.offers], dtype=np.float64)


class OfferScore(TypedDict):
    """One eligible offer in the ranking."""

    offer_id: str
    expected_value: float
    uplift: Annotated[
        float,
        Field(
            description="the offer's effect over no contact: on the acceptance probability, or on spend where "
            "`method` says spend uplift"
        ),
    ]
    p_accept: float


class NextBestOfferPart(TypedDict, total=False):
    """The offer with the highest expected incremental value, with the full ranking."""

    available: bool
    offer_id: Annotated[
        str | None,
        Field(
            description="the offer to show; null when none is available or, with the uplift method, when no "
            "eligible offer's expected value is above 0 (showing none is worth more; `reason` says so, `ranking` "
            "still lists them)"
        ),
    ]
    expected_value: Annotated[
        float | None, Field(description="expected incremental value of showing `offer_id` (0.0 when showing none)")
    ]
    ranking: list[OfferScore]
    method: Annotated[
        str | None,
        Field(
            description="uplift (of acceptance x the offer's value), spend uplift (where the offers log spend: "
            "the ranking is in spend), or propensity when offers had no control arm; with ', best single offer for "
            "all' where training found that the per-customer policy does not beat one offer for all"
        ),
    ]
    reason: Annotated[
        NoOfferReason | None,
        Field(
            description="why no offer is made (contact policy, in this order: holdout, opted_out, contact_cap, then "
            "no_positive_value); null when `offer_id` is set"
        ),
    ]
    detail: Annotated[str | None, Field(description="the reason (or why the part is unavailable) in words")]
    holdout: Annotated[bool, Field(description="the customer is in an experiment's holdout: show no offer")]


def effect_uplift(
    learner: str,
    x_weights: Sequence[float] | None,
    n_offers: int,
    x: np.ndarray,
    predict: Callable[[str, np.ndarray], Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Outcome without an offer and uplift per offer from an ``effect`` layout bundle (T-, X- or DR-learner).

    Args:
        learner: ``t``, ``x`` or ``dr`` (:attr:`OfferMeta.learner`).
        x_weights: The X-learner's weight of its control-side estimate, per offer.
        n_offers: Number of offers.
        x: Encoded rows.
        predict: ``predict(booster_name, matrix)`` returning the booster's predictions.

    Returns:
        ``(control_outcome (n,), uplift (n, n_offers))``.
    """
    base = np.asarray(predict("control", x), dtype=np.float64)
    uplift = np.empty((x.shape[0], n_offers))
    for j in range(n_offers):
        if learner == "t":
            uplift[:, j] = np.asarray(predict(f"arm{j}", x), dtype=np.float64) - base
        elif learner == "x":
            g = float(x_weights[j])  # type: ignore[index]
            tau_c = np.asarray(predict(f"tau{j}_c", x), dtype=np.float64)
            tau_t = np.asarray(predict(f"tau{j}_t", x), dtype=np.float64)
            uplift[:, j] = g * tau_c + (1.0 - g) * tau_t
        else:
            uplift[:, j] = np.asarray(predict(f"tau{j}", x), dtype=np.float64)
    return base, uplift


#: The boosters each effect learner keeps per offer ``j`` (beside ``control``), as :func:`effect_uplift` reads them.
EFFECT_BOOSTERS: dict[str, tuple[str, ...]] = {"t": ("arm{j}",), "x": ("tau{j}_c", "tau{j}_t"), "dr": ("tau{j}",)}


def effect_boosters(learner: str, n_offers: int) -> list[str]:
    """The boosters :func:`effect_uplift` reads for ``learner`` and ``n_offers`` offers."""
    return ["control", *(name.format(j=j) for j in range(n_offers) for name in EFFECT_BOOSTERS[learner])]


def best_offer(ranked: Sequence[Mapping[str, Any]], has_control: bool) -> Mapping[str, Any] | None:
    """The offer to show from a ranking (:meth:`OfferBundle.offer_scores`), or None when showing none is worth more.

    With a control arm, expected values are incremental over showing nothing, so an offer whose expected value is
    not above 0 loses money against no contact (the policy that training evaluates, too). Without one (the
    propensity fallback) they are not incremental, and the top eligible offer is shown.

    Args:
        ranked: One customer's eligible offers, best first.
        has_control: Whether the model learned from a control arm (``bundle.meta.has_control``).

    Returns:
        The top entry of ``ranked``, or None (nothing eligible, or nothing that pays).
    """
    if not ranked or (has_control and ranked[0]["expected_value"] <= 0):
        return None
    return ranked[0]


@dataclass
class OfferBundle(Bundle):
    """A next-best-offer model: uplift (or propensity) per offer, the catalog and its eligibility rules."""

    meta: OfferMeta  # type: ignore[assignment]
    rules: list[Rule] = field(default_factory=list)
    meta_type: ClassVar[type[BundleMeta]] = OfferMeta

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rules:
            known = set(self.encoder.columns)
            self.rules = [compile_rule(o.get("eligible_if"), known) for o in self.meta.offers]

    def offer_outcomes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outcome without an offer ``(n,)`` (NaN without a control arm) and per offer: uplift ``(n, k)``.

        The outcome the bundle values (``meta.outcome``): acceptance, or for a spend model the expected spend
        (:meth:`spend_outcomes`).
        """
        base, uplift = self.acceptance_outcomes(x)
        if self.meta.outcome == "revenue":
            return self.spend_outcomes(x, base, uplift)
        return base, uplift

    def spend_outcomes(self, x: np.ndarray, base: np.ndarray, uplift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected spend without an offer and the uplift in spend per offer, from acceptance and order value.

        A two-part (hurdle) model: spend under arm ``a`` is ``P(accept | x, a) * E[spend | accepted, x, a]``, the
        first from the acceptance boosters (``base``, ``base + uplift``), the second from the ``order_value``
        booster over ``[x | one-hot(arm)]``. Splitting them keeps the rare, heavy-tailed spend from driving the
        acceptance trees (Cragg 1971).
        """
        n_off = len(self.meta.offers)
        k = n_off + 1
        idx = np.tile(np.arange(-1, n_off), x.shape[0])
        order = self._predictor(ORDER_VALUE).predict(design_matrix(np.repeat(x, k, axis=0), n_off, idx))
        order = np.clip(np.asarray(order, dtype=np.float64).reshape(x.shape[0], k), 0.0, None)
        p_none = np.clip(base, 0.0, 1.0)
        p_offer = np.clip(base[:, None] + uplift, 0.0, 1.0)
        spend_none = p_none * order[:, 0]
        return spend_none, p_offer * order[:, 1:] - spend_none[:, None]

    def acceptance_outcomes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Acceptance without an offer ``(n,)`` (NaN without a control arm) and per offer: its uplift ``(n, k)``."""
        n_off = len(self.meta.offers)
        if self.meta.layout == "effect":
            # Every booster's trees in one walk for a few rows (features.forest.ForestStack), then the learner's sums.
            meta = self.meta
            names = effect_boosters(str(meta.learner), n_off)
            predicted = dict(zip(names, self.predict_many(names, x), strict=True))
            return effect_uplift(str(meta.learner), meta.x_weights, n_off, x, lambda name, _: predicted[name])
        k = n_off + 1
        idx = np.tile(np.arange(-1, n_off), x.shape[0])
        pred = self._predictor("main").predict(design_matrix(np.repeat(x, k, axis=0), n_off, idx))
        pred = np.asarray(pred, dtype=np.float64).reshape(x.shape[0], k)
        if not self.meta.has_control:
            return np.full(x.shape[0], np.nan), pred[:, 1:]
        return pred[:, 0], pred[:, 1:] - pred[:, :1]

    #: The name this had before it was public (training code calls it).
    _offer_outcomes = offer_outcomes

    def offer_scores(self, x: np.ndarray, feature_rows: Sequence[Mapping[str, Any]]) -> list[list[OfferScore]]:
        """Every offer ranked by expected incremental value for each customer (ineligible offers excluded).

        Where training found that the per-customer policy does not beat one offer for all (``meta.policy`` is
        ``best_single``), every customer's ranking uses each offer's average uplift instead: the top eligible
        offer is then the best single offer, here, in batch predict and in training metrics alike.
        """
        offers = self.meta.offers
        has_control = self.meta.has_control
        base, uplift = self.acceptance_outcomes(x)
        # For a spend model, the uplift ranked is in spend; the acceptance is still reported.
        spend = self.spend_outcomes(x, base, uplift)[1] if self.meta.outcome == "revenue" else uplift
        average = self.meta.average_uplift if self.meta.policy == BEST_SINGLE else None
        unit = self.meta.unit_values()
        out = []
        for i, row in enumerate(feature_rows):
            ranked = []
            for j, offer in enumerate(offers):
                if not self.rules[j](row):
                    continue
                u = float(average[offer["offer_id"]]) if average else float(spend[i, j])
                ev = u * unit[j] - float(offer["cost"])
                # Without a control arm the "uplift" is the acceptance itself (propensity fallback).
                p_accept = float(base[i] + uplift[i, j]) if has_control else float(uplift[i, j])
                ranked.append(
                    OfferScore(offer_id=offer["offer_id"], expected_value=float(ev), uplift=u, p_accept=p_accept)
                )
            ranked.sort(key=lambda r: -r["expected_value"])
            out.append(ranked)
        return out


class NextBestOffer(ModelKind):
    """The next-best-offer kind."""

    name = "next_best_offer"
    about = "The eligible offer with the highest expected incremental value and the full ranking"
    bundle_type = OfferBundle
    part = NextBestOfferPart
    columns = ("next_best_offer", "next_best_offer_value")

    def score(self, bundle: OfferBundle, ctx: ScoreContext) -> list[NextBestOfferPart]:
        """The offer to show (or none, with the reason) and the ranking, per row."""
        ranked = bundle.offer_scores(ctx.matrix(self.name), ctx.rows)
        method = bundle.meta.method
        out = []
        for ranking in ranked:
            if not ranking:
                out.append(
                    NextBestOfferPart(available=False, offer_id=None, reason="no_positive_value", detail=NONE_ELIGIBLE)
                )
                continue
            best = best_offer(ranking, bundle.meta.has_control)
            part = NextBestOfferPart(
                available=True,
                offer_id=best["offer_id"] if best else None,
                expected_value=best["expected_value"] if best else 0.0,
                ranking=ranking,
                method=method,
            )
            if best is None:
                part.update(reason="no_positive_value", detail=NO_OFFER_PAYS)
            out.append(part)
        return out

    def unavailable(self, why: str) -> NextBestOfferPart:
        """No offer model: ``reason`` holds contact-policy codes (CONTRACT §4), so the text goes in ``detail``."""
        return NextBestOfferPart(available=False, detail=why)

    def held_out(self, experiment: str) -> NextBestOfferPart:
        """The part of a customer in an experiment's holdout: no offer."""
        return NextBestOfferPart(
            available=False,
            holdout=True,
            offer_id=None,
            reason="holdout",
            detail=f"in the holdout of experiment {experiment!r}: show no offer",
        )

    def frame(self, bundle: OfferBundle, x: np.ndarray, frame: Any, known: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The offer to show and its value per row.

        :func:`best_offer`: ``None`` and 0.0 when no eligible offer pays, ``None`` and NaN when none is eligible.
        """
        ranked = bundle.offer_scores(x, frame.to_dict("records"))
        best = [best_offer(r, bundle.meta.has_control) for r in ranked]
        return {
            "next_best_offer": [b["offer_id"] if b else None for b in best],
            # Showing none is worth 0 over showing none; with nothing eligible there is no value at all.
            "next_best_offer_value": [
                b["expected_value"] if b else (0.0 if r else float("nan")) for b, r in zip(best, ranked, strict=True)
            ],
        }


NEXT_BEST_OFFER = NextBestOffer()
