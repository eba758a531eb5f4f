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

Where the offers log spend (``revenue`` on every accepted row), the same policies are also valued in spend: doubly
robust scores of the logged revenue, uplift over no contact minus cost (:func:`spend_scores`), so a policy chosen
on acceptance x the catalog's value is checked against what the customers actually spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from features.kinds import NEXT_BEST_OFFER, new_bundle
from features.kinds.next_best_offer import best_offer
from features.policy_value import offer_outcomes
from features.schema import CONTROL_OFFER
from features.scoring import Bundle, Encoder
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


def candidate_learners(frame: pd.DataFrame) -> tuple[str, ...]:
    """The S-learner always; T-, X- and DR-learners too where the log has a control arm."""
    return ("s", *LEARNERS) if (frame.offer_id.astype(str) == CONTROL_OFFER).any() else ("s",)


def fit_nbo(
    frame: pd.DataFrame, catalog: pd.DataFrame, config: TrainConfig, encoder: Encoder, learner: str = "s"
) -> Bundle:
    """Fit one learner on offer outcomes and package it with the catalog's value, cost and rules.

    The bundle serves the learned policy (``meta["policy"] = "learned"``); :func:`apply_choice` switches it to one
    offer for all. ``meta["average_uplift"]`` is what that uses: each offer's mean uplift on the rows that may get
    it under its ``eligible_if`` (an offer for long-tenure customers is judged on them, not on everyone).
    """
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
            "method": "uplift" if has_control else "propensity",
            "policy": LEARNED,
        }
    )
    bundle = new_bundle(kind=NEXT_BEST_OFFER.name, meta=meta, encoder=encoder, boosters=boosters)
    records = frame.to_dict("records")
    eligible = {
        o["offer_id"]: np.array([bool(rule(r)) for r in records])
        for rule, o in zip(bundle.rules, meta["offers"], strict=True)
    }
    # The bundle holds its own typed copy of ``meta``: set it there.
    bundle.meta.average_uplift = average_uplift(offer, y, prop, CONTROL_OFFER, eligible)
    return bundle


def apply_choice(bundle: Bundle, choice: PolicyChoice | None, reason: str | None = None) -> Bundle:
    """Record in ``bundle`` which policy is served and why (``method`` says so for every answer)."""
    served = choice.served if choice is not None else BEST_SINGLE
    bundle.meta.policy = served
    bundle.meta.policy_reason = reason or (choice.reason if choice else "")
    base = "uplift" if bundle.meta.has_control else "propensity"
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
    value = np.array([o["value"] for o in reference.meta.offers], dtype=np.float64)
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
    """The rows logging an arm of ``reference``, the logged arm's index, its propensity and the outcome."""
    names = arms(reference)
    logged = frame.offer_id.astype(str).to_numpy()
    known = np.isin(logged, names)
    frame = frame[known].reset_index(drop=True)
    index = {a: i for i, a in enumerate(names)}
    a = np.array([index[o] for o in logged[known]], dtype=np.intp)
    return frame, a, logged_propensity(frame), frame.accepted.to_numpy(dtype=float)


@dataclass
class NBOEvaluation:
    """The holdout evaluation of the candidate policies."""

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
    spend_values: pd.DataFrame | None = None

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
    return max(offers, key=lambda o: avg.get(o["offer_id"], 0.0) * o["value"] - o["cost"])["offer_id"]


def evaluate_nbo(
    bundles: dict[str, Bundle], frame: pd.DataFrame, seed: int, order_value: dict[str, float] | None = None
) -> NBOEvaluation:
    """Doubly robust values (95% intervals) of each candidate's policy, one offer for all, random and logged.

    Values are the value saved per customer over no contact (:func:`value_scores`). The outcome model of the doubly
    robust scores is the T-learner where there is one (else the first candidate), fitted on the training rows; the
    propensities are the logged ones. One offer for all is valued as a best-single bundle serves it (ranked on the
    training rows); the best single arm chosen on the holdout itself is reported beside it, as hindsight.

    Args:
        bundles: Candidate bundles fitted on the training rows, by learner name.
        frame: Holdout offer rows.
        seed: Unused by the estimators (kept for a seeded random policy elsewhere).
        order_value: Mean revenue per acceptance per arm on the training rows where the offers log spend
            (:func:`order_values`): the policies are then valued in spend too (``spend_values``, ``spend_value_*``).

    Returns:
        The evaluation; ``choice`` is None when the holdout logs fewer than two arms (nothing to compare).
    """
    del seed
    ref = bundles.get("t") or next(iter(bundles.values()))
    names = arms(ref)
    frame, a, prop, y = _holdout(ref, frame)
    logged = np.asarray(names, dtype=object)[a]
    ev = NBOEvaluation(arms=names)
    ev.qini_curves, qini = _qini(bundles.get("t") or ref, frame, logged, y)
    ev.metrics.update(qini)
    if len(set(logged)) < 2:
        value = {o["offer_id"]: o["value"] for o in ref.meta.offers}
        cost = {o["offer_id"]: o["cost"] for o in ref.meta.offers}
        reward = np.array([y[i] * value.get(o, 0.0) - cost.get(o, 0.0) for i, o in enumerate(logged)])
        ev.metrics["policy_value_logged"] = float(reward.mean()) if len(reward) else float("nan")
        ev.metrics["policy_value_evaluable"] = 0.0
        ev.reason = "the holdout logs a single arm: no policy comparison is possible, one offer for all is served"
        ev.best_single_offer = _top_single_offer(ref)
        return ev
    ev.metrics["policy_value_evaluable"] = 1.0
    rows = np.arange(len(a))
    scores = value_scores(ref, frame, a, prop, y)
    eligible = eligibility(ref, frame, names)
    ev.picks = {name: chosen_arms(b, frame, a) for name, b in bundles.items()}
    single_pick = ev.single_pick = chosen_arms(one_offer_for_all(ref), frame, a)
    ev.choice = choose_policy(scores, ev.picks, eligible=eligible, single_pick=single_pick)
    ev.best_single_offer = names[ev.choice.best_single]
    ev.reason = ev.choice.reason
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
    if order_value is not None and ref.meta.has_control:
        _value_in_spend(ev, ref, frame, (a, prop), order_value)
    return ev


def _value_in_spend(
    ev: NBOEvaluation,
    ref: Bundle,
    frame: pd.DataFrame,
    logged: tuple[np.ndarray, np.ndarray],
    order_value: dict[str, float],
) -> None:
    """Fill ``ev.spend_values`` and the ``spend_value_*`` metrics: the policies of ``ev`` valued in logged spend."""
    a, prop = logged
    rows = np.arange(len(a))
    spend = spend_scores(ref, frame, a, prop, frame.revenue.to_numpy(dtype=float), order_value)
    table = {name: mean_ci(spend[rows, pick]) for name, pick in ev.policy_picks(a).items()}
    table["random arm"] = mean_ci(spend.mean(axis=1))
    ev.spend_values = pd.DataFrame(
        {k: (e.value, e.low, e.high) for k, e in table.items()}, index=["dr_value", "low_95", "high_95"]
    ).T
    best = table[f"best single offer ({ev.best_single_offer})"]
    ev.metrics.update({f"spend_value_{name}_learner": table[f"{name}-learner policy"].value for name in ev.picks})
    ev.metrics.update(
        {
            "spend_value_best_single": best.value,
            "spend_value_best_single_low": best.low,
            "spend_value_best_single_high": best.high,
            "spend_value_random": table["random arm"].value,
            "spend_value_logged": table["logged policy"].value,
        }
    )


def served_value(
    bundle: Bundle, frame: pd.DataFrame, reference: Bundle, order_value: dict[str, float] | None = None
) -> dict[str, float]:
    """Doubly robust value saved (95% interval) of what ``bundle`` serves on ``frame``, by the path serving takes.

    With ``order_value`` (the offers log spend) also its spend saved and its paired gain in spend over one offer
    for all (``spend_value_model*``, ``spend_gain_served_vs_single*``).
    """
    frame, a, prop, y = _holdout(reference, frame)
    rows = np.arange(len(a))
    pick = chosen_arms(bundle, frame, a)
    est = mean_ci(value_scores(reference, frame, a, prop, y)[rows, pick])
    out = {"policy_value_model": est.value, "policy_value_model_low": est.low, "policy_value_model_high": est.high}
    if order_value is not None and reference.meta.has_control:
        spend = spend_scores(reference, frame, a, prop, frame.revenue.to_numpy(dtype=float), order_value)
        single = chosen_arms(one_offer_for_all(reference), frame, a)
        for key, e in (
            ("spend_value_model", mean_ci(spend[rows, pick])),
            ("spend_gain_served_vs_single", mean_ci(spend[rows, pick] - spend[rows, single])),
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


@dataclass
class OfferTraining:
    """What training the next-best-offer model produced: the holdout evaluation and the bundle to register."""

    evaluation: NBOEvaluation
    metrics: dict[str, float]
    eval_bundle: Bundle
    final: Bundle


def train_offer_policy(
    frame: pd.DataFrame, hold_mask: np.ndarray, catalog: pd.DataFrame, config: TrainConfig, encoder: Encoder
) -> OfferTraining:
    """Fit every candidate on the training rows, choose on the holdout, refit the chosen one on every row.

    The registered bundle serves the learned policy only where the holdout interval showed it beats the best
    single offer; otherwise one offer for all (``meta["policy"]``, ``meta["method"]`` and ``meta["policy_reason"]``
    say which and why). ``policy_value_model`` is the value of what the bundle serves, by the serving path.
    """
    train, hold = frame[~hold_mask], frame[hold_mask].reset_index(drop=True)
    bundles = {name: fit_nbo(train, catalog, config, encoder, name) for name in candidate_learners(train)}
    order_value = order_values(train) if spend_logged(train) and spend_logged(hold) else None
    ev = evaluate_nbo(bundles, hold, config.seed, order_value)
    learner = ev.choice.learner if ev.choice is not None else "s"
    served = apply_choice(bundles[learner], ev.choice, ev.reason)
    metrics = dict(ev.metrics)
    if ev.choice is not None:
        metrics.update(served_value(served, hold, bundles.get("t") or bundles["s"], order_value))
    final = apply_choice(fit_nbo(frame, catalog, config, encoder, learner), ev.choice, ev.reason)
    return OfferTraining(ev, metrics, served, final)
