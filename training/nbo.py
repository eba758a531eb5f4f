"""Next best offer: fit candidate learners, evaluate their policies by doubly robust value, pick what is served.

Candidates are the S-learner (:mod:`training.uplift`) and, where the log has a control arm, the T-, X- and
DR-learners (:mod:`training.learners`). On the holdout each candidate's policy (the offer
:func:`features.kinds.next_best_offer.best_offer` takes from
:meth:`~features.kinds.next_best_offer.OfferBundle.offer_scores`, or none) is valued by doubly robust scores of the
value saved (uplift over no contact x value - cost, :mod:`training.policy`); the best one is served only where its
interval clears one offer for all, otherwise the bundle is told to serve one offer for all (``meta["policy"] =
"best_single"``), which ``offer_scores`` applies in training metrics, batch predict and serving alike. "One offer
for all" is valued as that bundle serves it (offers ranked by their average value saved on the training rows,
eligibility honoured, nothing where nothing pays), so the served policy is never compared with a baseline it could
not serve.

Where the offers log spend (``revenue`` on every accepted row, and a control arm), spend is modelled too and the
decision is made in it. The T- and DR-learners' acceptance models times an order-value model (``t_spend``,
``dr_spend``, :func:`spend_twin`: an offer's value saved is its uplift in spend minus its cost) join the candidates,
and every candidate's policy, and one offer for all, is valued by doubly robust scores of the logged revenue,
uplift over no contact minus cost (:func:`spend_scores`): what customers spent is what an offer is for, and
acceptance x the catalog's value is only a model of it. The same policies in acceptance x value are reported
beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from features.kinds import NEXT_BEST_OFFER, new_bundle
from features.kinds.next_best_offer import ORDER_VALUE, SPEND_SUFFIX, OfferOutcome, best_offer
from features.policy_value import offer_outcomes
from features.schema import CONTROL_OFFER
from features.scoring import Bundle, Encoder, design_matrix
from training.config import TrainConfig
from training.learners import LEARNERS, LearnerParams, fit_effect_model
from training.policy import (
    BEST_SINGLE,
    LEARNED,
    PolicyChoice,
    average_uplift,
    choose_policy,
    dr_scores,
    incremental_scores,
    mean_ci,
    single_offer_picks,
)
from training.uplift import OfferUpliftModel
from training.uplift_metrics import qini_coefficient, qini_curve, uplift_at_k


def logged_propensity(frame: pd.DataFrame) -> np.ndarray:
    """The logged propensity of each row's offer; where absent, the arm's share of the rows (a randomized log)."""
    share = frame.offer_id.map(frame.offer_id.value_counts(normalize=True))
    return frame.propensity.fillna(share).to_numpy(float)


def _catalog_entries(frame: pd.DataFrame, catalog: pd.DataFrame, offers: list[str]) -> list[dict[str, Any]]:
    cat = catalog.set_index("offer_id") if len(catalog) else pd.DataFrame()
    entries = []
    for offer_id in offers:
        row = cat.loc[offer_id] if offer_id in cat.index else None
        value = row["value"] if row is not None and pd.notna(row["value"]) else None
        if value is None:
            accepted = frame[(frame.offer_id == offer_id) & (frame.accepted == 1)]
            value = float(accepted.revenue.mean()) if len(accepted) and accepted.revenue.sum() > 0 else 1.0
        cost = float(row["cost"]) if row is not None and pd.notna(row["cost"]) else 0.0
        rule = row["eligible_if"] if row is not None and pd.notna(row["eligible_if"]) else None
        entries.append({"offer_id": offer_id, "value": float(value), "cost": cost, "eligible_if": rule})
    return entries


#: The learners also valued in spend where the offers log it (not all of them: every extra candidate widens the
#: interval a learned policy must clear).
SPEND_LEARNERS = ("t", "dr")


def candidate_learners(frame: pd.DataFrame, spend: bool = False) -> tuple[str, ...]:
    """The candidates: the S-learner always; T-, X- and DR-learners too where the log has a control arm.

    With ``spend`` (the offers log spend, :func:`spend_logged`) the T- and DR-learners valued in spend as well
    (``t_spend``, ``dr_spend``: acceptance x order value, :func:`spend_twin`).
    """
    if not (frame.offer_id.astype(str) == CONTROL_OFFER).any():
        return ("s",)
    return ("s", *LEARNERS, *(f"{name}{SPEND_SUFFIX}" for name in SPEND_LEARNERS if spend))


def parse_candidate(candidate: str) -> tuple[str, OfferOutcome]:
    """A candidate's learner and the outcome it models: ``t_spend`` is the T-learner on revenue."""
    if candidate.endswith(SPEND_SUFFIX):
        return candidate.removesuffix(SPEND_SUFFIX), "revenue"
    return candidate, "accepted"


def fit_nbo(
    frame: pd.DataFrame, catalog: pd.DataFrame, config: TrainConfig, encoder: Encoder, learner: str = "s"
) -> Bundle:
    """Fit one candidate (:func:`candidate_learners`); package it with the catalog's value, cost and rules.

    The bundle serves the learned policy (``meta["policy"] = "learned"``); :func:`apply_choice` switches it to one
    offer for all. ``meta["average_uplift"]`` is what that uses: each offer's mean uplift on the rows that may get
    it under its ``eligible_if`` (an offer for long-tenure customers is judged on them, not on everyone). A spend
    candidate is the same learner's acceptance model with an order-value model beside it (:func:`spend_twin`).
    """
    learner, outcome = parse_candidate(learner)
    if outcome == "revenue":
        return spend_twin(fit_nbo(frame, catalog, config, encoder, learner), frame, config)
    x = encoder.encode_frame(frame)
    offer = frame.offer_id.astype(str).to_numpy()
    y = frame.accepted.to_numpy(dtype=float)
    prop = logged_propensity(frame)
    meta: dict[str, Any]
    if learner == "s":
        model = OfferUpliftModel(
            control=CONTROL_OFFER,
            n_estimators=config.xgb.n_estimators,
            max_depth=config.xgb.max_depth,
            learning_rate=config.xgb.learning_rate,
            seed=config.seed,
        ).fit(x, offer, y)
        offers, boosters, has_control = [str(o) for o in model.offers_], {"main": model.booster_}, model.has_control_
        meta = {"layout": "s", "learner": "s"}
    else:
        params = LearnerParams(
            n_estimators=config.effect_learners.n_estimators,
            effect_estimators=config.effect_learners.effect_estimators,
            learning_rate=config.xgb.learning_rate,
            seed=config.seed,
        )
        effect = fit_effect_model(learner, x, offer, y, CONTROL_OFFER, prop, params)  # type: ignore[arg-type]
        offers, boosters, has_control = effect.offers, effect.boosters, True
        meta = effect.meta()
    meta.update(
        {
            "offers": _catalog_entries(frame, catalog, offers),
            "has_control": bool(has_control),
            "method": _method(has_control, "accepted"),
            "policy": LEARNED,
        }
    )
    bundle = new_bundle(kind=NEXT_BEST_OFFER.name, meta=meta, encoder=encoder, boosters=boosters)
    _set_average_uplift(bundle, frame, y)
    return bundle


def _set_average_uplift(bundle: Bundle, frame: pd.DataFrame, y: np.ndarray) -> None:
    """``bundle.meta.average_uplift``: each offer's mean uplift in ``y`` on the rows its ``eligible_if`` admits."""
    records = frame.to_dict("records")
    eligible = {
        o["offer_id"]: np.array([bool(rule(r)) for r in records])
        for rule, o in zip(bundle.rules, bundle.meta.offers, strict=True)
    }
    offer = frame.offer_id.astype(str).to_numpy()
    # The bundle holds its own typed copy of ``meta``: set it there.
    bundle.meta.average_uplift = average_uplift(offer, y, logged_propensity(frame), CONTROL_OFFER, eligible)


def fit_order_value(frame: pd.DataFrame, bundle: Bundle, config: TrainConfig) -> xgb.Booster:
    """The spend of an accepted offer per customer and arm: a booster over ``[x | one-hot(arm)]`` on accepted rows.

    Accepted rows are few and their spend heavy-tailed, so the trees are shallow with large leaves and an L2
    penalty: the model is the arm's mean order value, moved only where many customers agree. Squared error keeps
    it a mean (what expected spend needs), not a median.
    """
    offers = [o["offer_id"] for o in bundle.meta.offers]
    rows = frame[frame.accepted.astype(bool)]
    index = {o: j for j, o in enumerate(offers)}
    arm = np.array([index.get(o, -1) for o in rows.offer_id.astype(str)], dtype=np.int64)
    spend = np.clip(np.nan_to_num(rows.revenue.to_numpy(dtype=float)), 0.0, None)
    x = design_matrix(bundle.encoder.encode_frame(rows), len(offers), arm)
    params = {
        "objective": "reg:squarederror",
        "max_depth": 2,
        "eta": config.xgb.learning_rate,
        "min_child_weight": max(20.0, len(rows) / 20.0),
        "reg_lambda": 10.0,
        "subsample": 0.8,
        "base_score": float(spend.mean()) if len(spend) else 0.0,
        "tree_method": "hist",
        "seed": config.seed,
        "nthread": 2,
    }
    dm = xgb.DMatrix(x, label=spend, missing=np.nan)
    return xgb.train(params, dm, num_boost_round=config.effect_learners.effect_estimators)


def spend_twin(bundle: Bundle, frame: pd.DataFrame, config: TrainConfig) -> Bundle:
    """``bundle``'s acceptance model valued in spend: with an order-value booster (:func:`fit_order_value`).

    Spend under an arm is acceptance x order value (:meth:`~features.kinds.next_best_offer.OfferBundle.spend_outcomes`);
    the value saved is the uplift in spend minus the cost. ``average_uplift`` becomes each offer's average uplift in
    logged spend, so that one offer for all ranks the offers by the spend they bring.
    """
    meta = bundle.meta.model_copy(
        update={"outcome": "revenue", "method": _method(bool(bundle.meta.has_control), "revenue")}
    )
    boosters = {**bundle.boosters, ORDER_VALUE: fit_order_value(frame, bundle, config)}
    twin = new_bundle(kind=NEXT_BEST_OFFER.name, meta=meta, encoder=bundle.encoder, boosters=boosters)
    _set_average_uplift(twin, frame, np.nan_to_num(frame.revenue.to_numpy(dtype=float)))
    return twin


def _method(has_control: bool, outcome: OfferOutcome) -> str:
    """The answer's ``method``: what the ranking is made of."""
    if not has_control:
        return "propensity"
    return "spend uplift" if outcome == "revenue" else "uplift"


def apply_choice(bundle: Bundle, choice: PolicyChoice | None, reason: str | None = None) -> Bundle:
    """Record in ``bundle`` which policy is served and why (``method`` says so for every answer)."""
    served = choice.served if choice is not None else BEST_SINGLE
    bundle.meta.policy = served
    bundle.meta.policy_reason = reason or (choice.reason if choice else "")
    base = _method(bool(bundle.meta.has_control), bundle.meta.outcome)
    bundle.meta.method = base if served == LEARNED else f"{base}, best single offer for all"
    return bundle


def one_offer_for_all(bundle: Bundle) -> Bundle:
    """The same bundle serving one offer for all (``meta["policy"] = "best_single"``), as :func:`apply_choice` sets."""
    return replace(bundle, meta=bundle.meta.model_copy(update={"policy": BEST_SINGLE}))


def arms(bundle: Bundle) -> list[str]:
    """Arms a policy of ``bundle`` can choose: no offer (where there is a control) then every offer."""
    offers = [o["offer_id"] for o in bundle.meta.offers]
    return [CONTROL_OFFER, *offers] if bundle.meta.has_control else offers


def chosen_arms(bundle: Bundle, frame: pd.DataFrame, fallback: np.ndarray) -> np.ndarray:
    """Index (into :func:`arms`) of what the bundle's served policy picks per row: the path serving takes."""
    index = {a: i for i, a in enumerate(arms(bundle))}
    ranked = bundle.offer_scores(bundle.encoder.encode_frame(frame), frame.to_dict("records"))
    has_control = bool(bundle.meta.has_control)
    out = np.empty(len(frame), dtype=np.intp)
    for i, rk in enumerate(ranked):
        pick = best_offer(rk, has_control)
        if pick is not None:
            out[i] = index[pick["offer_id"]]
        else:
            # No offer pays (control), or none is eligible without a control arm (the logged arm: no credit taken).
            out[i] = index[CONTROL_OFFER] if has_control else fallback[i]
    return out


def eligibility(bundle: Bundle, frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """``(n, n_arms)``: which arms each row may get under the catalog's ``eligible_if`` (no offer: always)."""
    records = frame.to_dict("records")
    out = np.ones((len(frame), len(names)), dtype=bool)
    index = {a: i for i, a in enumerate(names)}
    for rule, offer in zip(bundle.rules, bundle.meta.offers, strict=True):
        if offer["offer_id"] in index:
            out[:, index[offer["offer_id"]]] = [bool(rule(r)) for r in records]
    return out


def outcome_matrix(bundle: Bundle, frame: pd.DataFrame) -> np.ndarray:
    """Predicted outcome (acceptance) of every arm of :func:`arms` per row: no offer first where there is a control."""
    base, uplift = offer_outcomes(bundle, bundle.encoder.encode_frame(frame))
    if not bundle.meta.has_control:
        return np.clip(uplift, 0.0, None)  # the propensity fallback: the "uplift" is the acceptance itself
    return np.clip(np.column_stack([base, base[:, None] + uplift]), 0.0, None)


def value_scores(
    reference: Bundle, frame: pd.DataFrame, logged: np.ndarray, propensity: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Doubly robust value of every arm per row, with ``reference``'s outcome model (:mod:`training.policy`).

    With a control arm: the value saved over no contact (:func:`training.policy.incremental_scores`). Without one
    nothing is incremental: the logged acceptance times the offer's value, minus its cost.
    """
    value = reference.meta.unit_values()
    cost = np.array([o["cost"] for o in reference.meta.offers], dtype=np.float64)
    mu = outcome_matrix(reference, frame)
    if reference.meta.has_control:
        return incremental_scores(mu, logged, propensity, y, value, cost)
    return dr_scores(mu * value - cost, logged, propensity, y * value[logged] - cost[logged])


def spend_logged(frame: pd.DataFrame) -> bool:
    """Whether the offer rows log spend: a control arm, a ``revenue`` on every accepted row and some of it positive."""
    if "revenue" not in frame or not (frame.offer_id.astype(str) == CONTROL_OFFER).any():
        return False
    accepted = frame.accepted.astype(bool).to_numpy()
    revenue = frame.revenue.to_numpy(dtype=float)
    return bool(accepted.any() and not np.isnan(revenue[accepted]).any() and (revenue[accepted] > 0).any())


def order_values(frame: pd.DataFrame) -> dict[str, float]:
    """Mean revenue per accepted row, per logged arm (the overall mean for an arm nobody accepted)."""
    accepted = frame[frame.accepted.astype(bool)]
    overall = float(accepted.revenue.mean()) if len(accepted) else 0.0
    per_arm = accepted.groupby(accepted.offer_id.astype(str)).revenue.mean()
    return {str(arm): float(per_arm.get(str(arm), overall)) for arm in frame.offer_id.astype(str).unique()}


def spend_scores(
    reference: Bundle,
    frame: pd.DataFrame,
    logged: np.ndarray,
    propensity: np.ndarray,
    revenue: np.ndarray,
    order_value: dict[str, float],
) -> np.ndarray:
    """Doubly robust spend saved of every arm per row: uplift in logged revenue over no contact, minus the cost.

    The outcome model is two-part: ``reference``'s acceptance per arm times the arm's mean revenue per acceptance
    on the training rows (``order_value``). It only has to be reasonable: with the logged propensities the scores
    are unbiased whatever it is (:func:`training.policy.dr_scores`).
    """
    names = arms(reference)
    per_arm = np.array([order_value.get(n, 0.0) for n in names], dtype=np.float64)
    cost = np.array([o["cost"] for o in reference.meta.offers], dtype=np.float64)
    mu = outcome_matrix(reference, frame) * per_arm
    return incremental_scores(mu, logged, propensity, np.nan_to_num(revenue), np.ones_like(cost), cost)


def _holdout(reference: Bundle, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The rows logging an arm of ``reference``, the logged arm's index, its propensity and the outcome it models."""
    names = arms(reference)
    logged = frame.offer_id.astype(str).to_numpy()
    known = np.isin(logged, names)
    frame = frame[known].reset_index(drop=True)
    index = {a: i for i, a in enumerate(names)}
    a = np.array([index[o] for o in logged[known]], dtype=np.intp)
    return frame, a, logged_propensity(frame), np.nan_to_num(frame[reference.meta.outcome].to_numpy(dtype=float))


#: The currencies a policy is valued in: the contract's value saved from acceptance, or the spend the offers logged.
ACCEPTANCE = "acceptance"
SPEND = "spend"
CURRENCY_TEXT = {
    ACCEPTANCE: "the uplift in acceptance over no contact x the offer's value - its cost",
    SPEND: "the uplift in logged spend over no contact - the offer's cost",
}
#: The metric prefix of the policies' values in the currency that did not decide.
_ALT_PREFIX = {ACCEPTANCE: "spend_value", SPEND: "acceptance_value"}


@dataclass
class NBOEvaluation:
    """The holdout evaluation of the candidate policies.

    Attributes:
        currency: What decided (``acceptance`` or ``spend``, :func:`evaluate_nbo`); ``values`` and the
            ``policy_value_*`` metrics are in it.
        alt_values: The same policies in the other currency, where there is one (``spend_value_*`` or
            ``acceptance_value_*`` metrics).
        scores, alt_scores, logged: The holdout's doubly robust scores ``(n, n_arms)`` in each currency and the
            logged arm per row, for :func:`served_value`.
        holdout: The holdout rows that log an arm of the candidates.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    choice: PolicyChoice | None = None
    best_single_offer: str = ""
    reason: str = ""
    qini_curves: dict[str, Any] = field(default_factory=dict)
    values: pd.DataFrame | None = None
    picks: dict[str, np.ndarray] = field(default_factory=dict)
    #: What one offer for all gives per holdout row (index into ``arms``), beside the learners' ``picks``.
    single_pick: np.ndarray | None = None
    arms: list[str] = field(default_factory=list)
    currency: str = ACCEPTANCE
    alt_values: pd.DataFrame | None = None
    scores: np.ndarray | None = None
    alt_scores: np.ndarray | None = None
    logged: np.ndarray | None = None
    holdout: pd.DataFrame | None = None

    @property
    def alt_currency(self) -> str:
        """The currency of ``alt_values``."""
        return SPEND if self.currency == ACCEPTANCE else ACCEPTANCE

    def policy_picks(self, logged: np.ndarray) -> dict[str, np.ndarray]:
        """Each policy's arm per holdout row, named as in ``values``: the learners, one offer for all, the logged."""
        picks = {f"{name}-learner policy": pick for name, pick in self.picks.items()}
        if self.single_pick is not None:
            picks[f"best single offer ({self.best_single_offer})"] = self.single_pick
        picks["logged policy"] = logged
        return picks


def _top_single_offer(bundle: Bundle) -> str:
    """The offer one offer for all gives where it is eligible: the best average value on the training rows."""
    offers = bundle.meta.offers
    if not offers:
        return ""
    avg = bundle.meta.average_uplift
    gain = [avg.get(o["offer_id"], 0.0) * u - o["cost"] for o, u in zip(offers, bundle.meta.unit_values(), strict=True)]
    return offers[int(np.argmax(gain))]["offer_id"]


def single_reference(bundles: dict[str, Bundle], currency: str) -> str:
    """The candidate whose bundle serves one offer for all in ``currency``: its average uplift ranks the offers.

    In spend, the T-learner on spend (its averages are spend uplifts); else the T-learner (the S-learner without a
    control arm). Every learner on one outcome has the same averages (they are read from the log).
    """
    if currency == SPEND:
        return f"t{SPEND_SUFFIX}"
    return "t" if "t" in bundles else next(iter(bundles))


def evaluate_nbo(
    bundles: dict[str, Bundle], frame: pd.DataFrame, seed: int, order_value: dict[str, float] | None = None
) -> NBOEvaluation:
    """Doubly robust values (95% intervals) of each candidate's policy, one offer for all, random and logged.

    Values are the value saved per customer over no contact. Where the offers log spend (``order_value`` given and
    the spend candidates fitted) they are in spend (:func:`spend_scores`): the money customers spent is what an
    offer is for, and acceptance x the catalog's value is only a model of it. Otherwise they are acceptance uplift x
    value - cost (:func:`value_scores`). Learners on either outcome are compared on the same scores, and the values
    in the other currency are reported beside them (``alt_values``). The outcome model of the doubly robust scores
    is the T-learner on acceptance where there is one (else the first candidate), fitted on the training rows; the
    propensities are the logged ones. One offer for all is valued as a best-single bundle of the decision's
    currency serves it (:func:`single_reference`, ranked on the training rows); the best single arm chosen on the
    holdout itself is reported beside it, as hindsight.

    Args:
        bundles: Candidate bundles fitted on the training rows, by candidate name.
        frame: Holdout offer rows.
        seed: Unused by the estimators (kept for a seeded random policy elsewhere).
        order_value: Mean revenue per acceptance per arm on the training rows where the offers log spend
            (:func:`order_values`).

    Returns:
        The evaluation; ``choice`` is None when the holdout logs fewer than two arms (nothing to compare).
    """
    del seed
    ref = bundles.get("t") or next(iter(bundles.values()))
    in_spend = order_value is not None and bool(ref.meta.has_control)
    currency = SPEND if in_spend and f"t{SPEND_SUFFIX}" in bundles else ACCEPTANCE
    single_ref = bundles[single_reference(bundles, currency)]
    names = arms(ref)
    frame, a, prop, y = _holdout(ref, frame)
    logged = np.asarray(names, dtype=object)[a]
    ev = NBOEvaluation(arms=names, currency=currency, holdout=frame, logged=a)
    ev.qini_curves, qini = _qini(ref, frame, logged, y)
    ev.metrics.update(qini)
    if len(set(logged)) < 2:
        value = dict(zip((o["offer_id"] for o in ref.meta.offers), ref.meta.unit_values(), strict=True))
        cost = {o["offer_id"]: o["cost"] for o in ref.meta.offers}
        outcome = frame.revenue.to_numpy(dtype=float) if currency == SPEND else y
        value = dict.fromkeys(value, 1.0) if currency == SPEND else value
        reward = np.array([outcome[i] * value.get(o, 0.0) - cost.get(o, 0.0) for i, o in enumerate(logged)])
        ev.metrics["policy_value_logged"] = float(reward.mean()) if len(reward) else float("nan")
        ev.metrics["policy_value_evaluable"] = 0.0
        ev.metrics["policy_value_in_spend"] = float(currency == SPEND)
        ev.reason = "the holdout logs a single arm: no policy comparison is possible, one offer for all is served"
        ev.best_single_offer = _top_single_offer(single_ref)
        return ev
    ev.metrics["policy_value_evaluable"] = 1.0
    ev.metrics["policy_value_in_spend"] = float(currency == SPEND)
    rows = np.arange(len(a))
    by_currency = {ACCEPTANCE: value_scores(ref, frame, a, prop, y)}
    if in_spend:
        revenue = frame.revenue.to_numpy(dtype=float)
        by_currency[SPEND] = spend_scores(ref, frame, a, prop, revenue, order_value)  # type: ignore[arg-type]
    scores = ev.scores = by_currency[currency]
    ev.alt_scores = by_currency.get(ev.alt_currency)
    eligible = eligibility(ref, frame, names)
    ev.picks = {name: chosen_arms(b, frame, a) for name, b in bundles.items()}
    single_pick = ev.single_pick = chosen_arms(one_offer_for_all(single_ref), frame, a)
    ev.choice = choose_policy(scores, ev.picks, eligible=eligible, single_pick=single_pick)
    ev.best_single_offer = names[ev.choice.best_single]
    ev.reason = f"{ev.choice.reason} (value saved: {CURRENCY_TEXT[currency]})"
    table: dict[str, tuple[float, float, float]] = {}
    for name, pick in ev.picks.items():
        est = mean_ci(scores[rows, pick])
        table[f"{name}-learner policy"] = (est.value, est.low, est.high)
        ev.metrics[f"policy_value_{name}_learner"] = est.value
    single = mean_ci(scores[rows, single_pick])
    table[f"best single offer ({ev.best_single_offer})"] = (single.value, single.low, single.high)
    hindsight_pick = single_offer_picks(scores, eligible)
    hindsight = mean_ci(scores[rows, hindsight_pick])
    best_arm = names[int(np.argmax(np.bincount(hindsight_pick, minlength=len(names))))]
    table[f"best single arm in hindsight ({best_arm}, chosen on the holdout)"] = (
        hindsight.value,
        hindsight.low,
        hindsight.high,
    )
    rand = mean_ci(scores.mean(axis=1))
    table["random arm"] = (rand.value, rand.low, rand.high)
    logged_value = mean_ci(scores[rows, a])
    table["logged policy"] = (logged_value.value, logged_value.low, logged_value.high)
    ev.values = pd.DataFrame(table, index=["dr_value", "low_95", "high_95"]).T
    ev.metrics.update(
        {
            "policy_value_logged": logged_value.value,
            "policy_value_best_single": single.value,
            "policy_value_best_single_low": single.low,
            "policy_value_best_single_high": single.high,
            "policy_value_best_arm_hindsight": hindsight.value,
            "policy_value_random": rand.value,
            "policy_gain_learned_vs_single": ev.choice.gain.value,
            "policy_gain_learned_vs_single_low": ev.choice.gain.low,
            "policy_gain_learned_vs_single_high": ev.choice.gain.high,
            "policy_served_learned": float(ev.choice.served == LEARNED),
        }
    )
    if ev.alt_scores is not None:
        _alt_values(ev, ev.alt_scores, a)
    return ev


def _alt_values(ev: NBOEvaluation, alt: np.ndarray, logged: np.ndarray) -> None:
    """Fill ``ev.alt_values`` and its metrics: the policies of ``ev`` valued in the currency that did not decide."""
    rows = np.arange(len(logged))
    prefix = _ALT_PREFIX[ev.currency]
    table = {name: mean_ci(alt[rows, pick]) for name, pick in ev.policy_picks(logged).items()}
    table["random arm"] = mean_ci(alt.mean(axis=1))
    ev.alt_values = pd.DataFrame(
        {k: (e.value, e.low, e.high) for k, e in table.items()}, index=["dr_value", "low_95", "high_95"]
    ).T
    best = table[f"best single offer ({ev.best_single_offer})"]
    ev.metrics.update({f"{prefix}_{name}_learner": table[f"{name}-learner policy"].value for name in ev.picks})
    ev.metrics.update(
        {
            f"{prefix}_best_single": best.value,
            f"{prefix}_best_single_low": best.low,
            f"{prefix}_best_single_high": best.high,
            f"{prefix}_random": table["random arm"].value,
            f"{prefix}_logged": table["logged policy"].value,
        }
    )


def served_value(bundle: Bundle, ev: NBOEvaluation) -> dict[str, float]:
    """Doubly robust value saved (95% interval) of what ``bundle`` serves on ``ev``'s holdout, by the serving path.

    In the decision's currency (``policy_value_model*``) and, where there is one, in the other
    (``spend_value_model*`` or ``acceptance_value_model*``, with the paired gain over one offer for all,
    ``*_gain_served_vs_single*``).
    """
    if ev.scores is None or ev.holdout is None or ev.logged is None:
        return {}
    rows = np.arange(len(ev.logged))
    pick = chosen_arms(bundle, ev.holdout, ev.logged)
    est = mean_ci(ev.scores[rows, pick])
    out = {"policy_value_model": est.value, "policy_value_model_low": est.low, "policy_value_model_high": est.high}
    if ev.alt_scores is not None and ev.single_pick is not None:
        prefix = _ALT_PREFIX[ev.currency].removesuffix("_value")
        alt = ev.alt_scores
        for key, e in (
            (f"{prefix}_value_model", mean_ci(alt[rows, pick])),
            (f"{prefix}_gain_served_vs_single", mean_ci(alt[rows, pick] - alt[rows, ev.single_pick])),
        ):
            out.update({key: e.value, f"{key}_low": e.low, f"{key}_high": e.high})
    return out


def _qini(
    bundle: Bundle, frame: pd.DataFrame, logged: np.ndarray, y: np.ndarray
) -> tuple[dict[str, Any], dict[str, float]]:
    """Qini coefficient and uplift@30% per offer vs control, by ``bundle``'s per-customer uplift."""
    if not bundle.meta.has_control or not len(frame):
        return {}, {}
    _, uplift = offer_outcomes(bundle, bundle.encoder.encode_frame(frame))
    curves: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for j, o in enumerate(o["offer_id"] for o in bundle.meta.offers):
        mask = np.isin(logged, [o, CONTROL_OFFER])
        treated = logged[mask] == o
        if treated.sum() < 10 or (~treated).sum() < 10:
            continue
        metrics[f"qini_{o}"] = float(qini_coefficient(uplift[mask, j], treated, y[mask]))
        metrics[f"uplift_at_30pct_{o}"] = float(uplift_at_k(uplift[mask, j], treated, y[mask], 0.3))
        curves[o] = qini_curve(uplift[mask, j], treated, y[mask])
    return curves, metrics


def _registered_learner(ev: NBOEvaluation, bundles: dict[str, Bundle]) -> str:
    """The candidate whose bundle is served: the chosen learner, or under one offer for all the best on its outcome.

    One offer for all ranks the offers by their average uplift, which is the same for every learner on one outcome
    (it is read from the log) and is the ranking the evaluation valued; a learner on the other outcome has its
    averages in another unit and could put another offer first.
    """
    if ev.choice is None:
        return single_reference(bundles, ev.currency)
    if ev.choice.served == LEARNED:
        return ev.choice.learner
    spend = ev.currency == SPEND
    same = [name for name in ev.picks if name.endswith(SPEND_SUFFIX) == spend]
    return max(same, key=lambda name: ev.metrics[f"policy_value_{name}_learner"])


@dataclass
class OfferTraining:
    """What training the next-best-offer model produced: the holdout evaluation and the bundle to register."""

    evaluation: NBOEvaluation
    metrics: dict[str, float]
    eval_bundle: Bundle
    final: Bundle
    #: Every candidate fitted on the training rows, by name.
    candidates: dict[str, Bundle] = field(default_factory=dict)


def train_offer_policy(
    frame: pd.DataFrame, hold_mask: np.ndarray, catalog: pd.DataFrame, config: TrainConfig, encoder: Encoder
) -> OfferTraining:
    """Fit every candidate on the training rows, choose on the holdout, refit the chosen one on every row.

    The registered bundle serves the learned policy only where the holdout interval showed it beats the best
    single offer; otherwise one offer for all (``meta["policy"]``, ``meta["method"]`` and ``meta["policy_reason"]``
    say which and why). ``policy_value_model`` is the value of what the bundle serves, by the serving path.
    """
    train, hold = frame[~hold_mask], frame[hold_mask].reset_index(drop=True)
    order_value = order_values(train) if spend_logged(train) and spend_logged(hold) else None
    names = candidate_learners(train, spend=order_value is not None and config.offer_value == "auto")
    bundles = {name: fit_nbo(train, catalog, config, encoder, name) for name in names if SPEND_SUFFIX not in name}
    for name in names:  # a spend candidate reuses its learner's acceptance model
        learner, outcome = parse_candidate(name)
        if outcome == "revenue":
            bundles[name] = spend_twin(bundles[learner], train, config)
    ev = evaluate_nbo(bundles, hold, config.seed, order_value)
    learner = _registered_learner(ev, bundles)
    served = apply_choice(bundles[learner], ev.choice, ev.reason)
    metrics = dict(ev.metrics)
    if ev.choice is not None:
        metrics.update(served_value(served, ev))
    final = apply_choice(fit_nbo(frame, catalog, config, encoder, learner), ev.choice, ev.reason)
    return OfferTraining(ev, metrics, served, final, bundles)
