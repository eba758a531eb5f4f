"""``cxpredict target``: whom to contact with which offer so that the value saved is largest within a budget.

The recipe: read the data, build every known customer's features at T, score them with the registry's champion
bundles (the same :class:`features.scoring.Bundle` code the service runs), take each eligible offer's value saved
for each customer (CONTRACT §2: the uplift in acceptance the offer causes for this customer, by the offer model,
times its value, minus its cost; :func:`score_pairs`), keep the offers the served policy may give, drop customers
the contact policy holds back (holdout, opt-out, caps counted from the decision log), choose at most one offer per
customer under the budget (a multiple-choice knapsack, see :func:`knapsack`), write the campaign file atomically,
log the picks as decisions (channel ``campaign``) and the run to MLflow with the baselines of
:func:`evaluate_baselines`.

Whom to contact is ranked by the customer's own value saved even when the served offer policy is one offer for
all: that policy says which offer to give, not who is worth contacting (an average uplift ranks nobody).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import registry
from features.data import load_data_dir
from features.kinds import CHURN, CLTV, NEXT_BEST_OFFER
from features.kinds.churn import risk_band
from features.kinds.next_best_offer import best_offer
from features.pipeline import (
    FeatureConfig,
    build_features,
    build_offer_outcomes,
    default_as_of,
    require_population,
    write_frame,
)
from features.policy import load_policy, window_start
from features.policy_value import Estimate, dr_arm_outcomes, dr_policy_terms, mean_interval, offer_outcomes
from features.schema import CONTROL_OFFER
from features.scoring import Bundle
from features.settings import Settings
from serving.decision_log import new_decision_id
from serving.decision_log_factory import open_decision_log
from serving.layout import MODELS

log = logging.getLogger(__name__)

COLUMNS = ["customer_id", "offer_id", "value_saved", "cost", "churn_probability", "cltv", "reason"]
MLFLOW_EXPERIMENT = "cxpredict-target"
CHANNEL = "campaign"
#: Days of logged offers the baselines are evaluated on.
EVAL_WINDOW_DAYS = 30
POLICIES = ("value_saved", "churn_risk", "cltv", "random")


@dataclass
class Champions:
    """The champion bundles ``target`` decides with (churn and CLTV are optional, the offer model is not)."""

    nbo: Bundle
    churn: Bundle | None = None
    cltv: Bundle | None = None
    versions: dict[str, int] = field(default_factory=dict)


@dataclass
class TargetResult:
    """What one ``target`` run did.

    Attributes:
        campaign: The chosen rows (CONTRACT §3 columns).
        as_of: T.
        budget: B.
        spent: Total cost of the chosen offers.
        value_saved: Expected total value saved by the chosen set (the models' estimate).
        upper_bound: The LP-relaxation bound on the best total any choice within the budget could reach.
        withheld: Candidates the contact policy held back, by reason.
        logged: Decisions written to the decision log (0 with ``--dry-run``).
        evaluation: The doubly robust comparison with the baselines (empty when no logged offers allow it).
        run_id: The MLflow run.
    """

    campaign: pd.DataFrame
    as_of: datetime
    budget: float
    spent: float
    value_saved: float
    upper_bound: float
    withheld: dict[str, int]
    logged: int
    evaluation: dict[str, Any]
    run_id: str | None = None


def load_champions(settings: Settings) -> Champions:
    """The registry's champion bundles, fetched like ``cxpredict predict`` does.

    Raises:
        ValueError: no ``next_best_offer`` champion (a campaign needs offers).
    """
    client = registry.configure(settings)
    found: dict[str, Bundle] = {}
    versions: dict[str, int] = {}
    for name in MODELS:
        try:
            found[name], versions[name] = registry.load_bundle(
                client, name, registry.CHAMPION, settings.home / "models"
            )
        except ValueError:
            continue
    if NEXT_BEST_OFFER.name not in found:
        raise ValueError(
            f"no {NEXT_BEST_OFFER.name} model has the alias 'champion': run `cxpredict train` (or `demo`) first"
        )
    return Champions(found[NEXT_BEST_OFFER.name], found.get(CHURN.name), found.get(CLTV.name), versions)


def score_pairs(frame: pd.DataFrame, models: Champions) -> pd.DataFrame:
    """One row per (customer, eligible offer): value saved, cost, acceptance with and without it, churn and CLTV.

    The value saved is the customer's own: the uplift in acceptance the fitted offer model predicts for this
    customer and offer (:func:`features.policy_value.offer_outcomes`), times the offer's value, minus its cost
    (CONTRACT §2); for a model of spend, the uplift in spend minus the cost. Targeting decides *whom* to contact,
    so it ranks by that even where the served policy gives one offer for all (an average uplift tells no customer
    from another). ``allowed`` marks the offers the served policy may give the customer: every eligible offer under
    a learned policy; under one offer for all, the one it serves (none where nothing pays on average). Without a
    control arm the "uplift" is the acceptance itself (the propensity fallback) and nothing is incremental.
    """
    nbo = models.nbo
    x = nbo.encoder.encode_frame(frame)
    records = frame.to_dict("records")
    ranked = nbo.offer_scores(x, records)
    base, uplift = offer_outcomes(nbo, x)
    # The acceptance with and without the offer (for a spend model, its acceptance part).
    accept_base, accept_uplift = nbo.acceptance_outcomes(x)
    has_control = bool(nbo.meta.has_control)
    one_for_all = nbo.meta.policy == "best_single"
    column = {o["offer_id"]: j for j, o in enumerate(nbo.meta.offers)}
    value = dict(zip(column, nbo.meta.unit_values(), strict=True))
    cost = {o["offer_id"]: float(o["cost"]) for o in nbo.meta.offers}
    churn = (
        models.churn.churn_probability(models.churn.encoder.encode_frame(frame))
        if models.churn
        else np.full(len(frame), np.nan)
    )
    cltv = models.cltv.spend(models.cltv.encoder.encode_frame(frame))[1] if models.cltv else np.full(len(frame), np.nan)
    rows = []
    for i, (cid, offers) in enumerate(zip(frame["customer_id"].astype(str), ranked, strict=True)):
        served = best_offer(offers, has_control)
        for r in offers:
            o = r["offer_id"]
            u, j = float(uplift[i, column[o]]), column[o]
            control = float(accept_base[i]) if has_control else 0.0
            allowed = (served is not None and served["offer_id"] == o) if one_for_all else True
            p_accept = control + float(accept_uplift[i, j])
            rows.append((cid, o, u * value[o] - cost[o], cost[o], p_accept, control, allowed, churn[i], cltv[i], i))
    names = ["customer_id", "offer_id", "value_saved", "cost", "p_accept", "p_control", "allowed"]
    out = pd.DataFrame(rows, columns=[*names, "churn_probability", "cltv", "row"])
    return out.astype({"churn_probability": float, "cltv": float, "allowed": bool})


def _hull(options: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """The upper concave hull from (0, 0) of one customer's (cost, value, index) options: the LP-useful upgrades."""
    pts: list[tuple[float, float, int]] = [(0.0, 0.0, -1)]
    best = 0.0
    for c, v, j in sorted(options, key=lambda o: (o[0], -o[1])):
        if v <= best:  # dominated: costs at least as much for no more value
            continue
        best = v
        while len(pts) >= 2:
            (c1, v1, _), (c2, v2, _) = pts[-2], pts[-1]
            # Drop the middle point when it lies on or below the segment from the one before to the new one.
            if (v2 - v1) * (c - c1) <= (v - v1) * (c2 - c1):
                pts.pop()
            else:
                break
        pts.append((c, v, j))
    return pts


def knapsack(pairs: pd.DataFrame, budget: float) -> tuple[list[int], float, float]:
    """At most one offer per customer, total cost within ``budget``, total value saved as large as greedy gets it.

    The LP relaxation of this multiple-choice knapsack is solved exactly by taking each customer's hull upgrades in
    order of value per cost (Sinha and Zemel, 1979); the greedy keeps every upgrade that fits and skips a
    customer's later upgrades once one did not. Its total is within one item's value of the bound.

    Args:
        pairs: Candidate rows with ``customer_id``, ``value_saved`` (> 0) and ``cost`` (>= 0).
        budget: Most total cost.

    Returns:
        Row positions chosen (one per chosen customer), their total value and the LP upper bound.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    segments = []
    for _, group in pairs.groupby("customer_id", sort=False):
        opts = list(zip(group["cost"].astype(float), group["value_saved"].astype(float), group.index, strict=True))
        hull = _hull(opts)
        for k in range(1, len(hull)):
            dc, dv = hull[k][0] - hull[k - 1][0], hull[k][1] - hull[k - 1][1]
            segments.append((math.inf if dc <= 0 else dv / dc, dc, dv, hull[k][2]))
    # A customer's upgrades have falling slopes, so this order takes them in turn (ties: the bigger gain first).
    segments.sort(key=lambda s: (-s[0], -s[2]))
    bound, room = 0.0, float(budget)
    for slope, dc, dv, _ in segments:
        if dc <= room:
            bound += dv
            room -= dc
        else:
            bound += slope * room if math.isfinite(slope) else 0.0
            break
    spent, picked, blocked = 0.0, {}, set()
    cid_of = pairs["customer_id"]
    for _, dc, _, j in segments:
        cid = cid_of.at[j]
        if cid in blocked:
            continue
        if spent + dc <= budget + 1e-9:
            spent += dc
            picked[cid] = j
        else:
            blocked.add(cid)
    chosen = list(picked.values())
    total = float(pairs.loc[chosen, "value_saved"].sum()) if chosen else 0.0
    # The classic guard against a greedy stuck on small items: one big item alone may be worth more.
    fits = pairs[pairs["cost"] <= budget]
    if len(fits) and float(fits["value_saved"].max()) > total:
        j = fits["value_saved"].idxmax()
        chosen, total = [j], float(pairs.at[j, "value_saved"])
    return chosen, total, max(bound, total)


def _ranked_single_offer(pairs_all: pd.DataFrame, order: list[str], offer: str, budget: float) -> dict[str, str]:
    """Customers in ``order`` given ``offer`` (where eligible) until the budget is spent: what marketers do today."""
    eligible = pairs_all[pairs_all["offer_id"] == offer].drop_duplicates("customer_id").set_index("customer_id")
    cost = float(eligible["cost"].iloc[0]) if len(eligible) else math.inf
    out: dict[str, str] = {}
    spent = 0.0
    for cid in order:
        if cid not in eligible.index:
            continue
        if spent + cost > budget + 1e-9:
            break
        out[cid] = offer
        spent += cost
    return out


def baseline_choices(
    frame: pd.DataFrame, pairs_all: pd.DataFrame, budget: float, seed: int
) -> dict[str, dict[str, str]]:
    """Customer -> offer under each policy: value saved (the knapsack), churn risk, CLTV, random; same budget.

    The value-saved policy is what ``target`` chooses (allowed offers with a positive value saved, the knapsack).
    The baselines give everyone they pick the best single offer (highest mean value saved over all customers).
    """
    positive = pairs_all[pairs_all["allowed"] & (pairs_all["value_saved"] > 0)]
    chosen, _, _ = knapsack(positive, budget)
    out = {"value_saved": dict(zip(positive.loc[chosen, "customer_id"], positive.loc[chosen, "offer_id"], strict=True))}
    best = pairs_all.groupby("offer_id")["value_saved"].mean().idxmax()
    ids = frame["customer_id"].astype(str).to_numpy()
    per = pairs_all.drop_duplicates("customer_id").set_index("customer_id")
    for name, key in (("churn_risk", "churn_probability"), ("cltv", "cltv")):
        scores = per[key].reindex(ids).fillna(-np.inf).to_numpy()
        order = list(ids[np.argsort(-scores, kind="stable")])
        out[name] = _ranked_single_offer(pairs_all, order, best, budget)
    rng = np.random.default_rng(seed)
    out["random"] = _ranked_single_offer(pairs_all, list(rng.permutation(ids)), best, budget)
    out["_best_single_offer"] = {"offer": best}  # type: ignore[dict-item]
    return out


def compare_targeting(
    frame: pd.DataFrame,
    models: Champions,
    budget_per_customer: float,
    seed: int = 0,
    per_contact: bool = False,
    rankings: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Doubly robust value saved of ``target``'s choice and of the three baselines on logged, randomised offers.

    Every policy spends ``budget_per_customer`` times the number of logged customers. Values are incremental over
    contacting nobody (:mod:`features.policy_value`), per logged customer and in total, with 95% intervals;
    ``diff_*`` are the paired differences of the chosen set over each baseline. The outcome model of the doubly
    robust estimate is the offer model's, for every arm.

    Args:
        frame: One row per logged customer: the features at the offer's time, ``logged_offer`` (the arm logged, the
            control included), ``accepted`` (``revenue`` where the offer model predicts spend) and ``propensity``
            (NaN: the arm's share of the rows).
        models: The bundles deciding (churn and CLTV feed the baselines).
        budget_per_customer: Budget per logged customer, in the catalog's cost units (contacts with
            ``per_contact``).
        seed: Seed of the random baseline.
        per_contact: Count the budget in contacts (each costs 1 in the choice; the value saved still subtracts the
            catalog's cost): for catalogs whose offers cost nothing, where a cost budget would not bind.
        rankings: Scores to rank the baselines by instead of the models' (``churn_probability``, ``cltv``), one
            per row of ``frame``, where a data set has no churn or CLTV model.

    Returns:
        The figures, or ``{"skipped": why}`` without a control arm among the logged offers. ``knapsack`` says how
        close the greedy choice is to optimal: its total value saved by the models (``greedy``) against the LP
        relaxation's bound (``lp_bound``), which no choice within the budget can exceed. ``choices`` holds each
        policy's picks (customer -> offer), so a benchmark that knows the true effects can value them exactly.
    """
    if CONTROL_OFFER not in set(frame["logged_offer"].astype(str)) or not models.nbo.meta.has_control:
        return {"skipped": "no control arm among the logged offers: the value saved is not identified"}
    frame = frame.reset_index(drop=True)
    pairs_all = score_pairs(frame, models)
    for key, scores in (rankings or {}).items():
        pairs_all[key] = np.asarray(scores, dtype=np.float64)[pairs_all["row"].to_numpy()]
    if per_contact:
        pairs_all["cost"] = 1.0
    n = len(frame)
    prop = frame["propensity"].astype(float)
    prop = prop.fillna(frame["logged_offer"].map(frame["logged_offer"].value_counts(normalize=True))).to_numpy()
    base, uplift = offer_outcomes(models.nbo, models.nbo.encoder.encode_frame(frame))
    mu = {CONTROL_OFFER: np.clip(base, 0.0, None)}
    for j, o in enumerate(models.nbo.meta.offers):
        mu[o["offer_id"]] = np.clip(base + uplift[:, j], 0.0, None)
    logged = frame["logged_offer"].astype(str).to_numpy()
    known = np.isin(logged, list(mu))
    # A logged arm the model does not know is nobody's choice: its rows still count, with a zero correction.
    # The outcome the offer model predicts: acceptance, or spend for a model of spend.
    y = np.nan_to_num(frame[models.nbo.meta.outcome].to_numpy(float))
    dr = dr_arm_outcomes(list(np.where(known, logged, "")), np.where(known, prop, 1.0), y, mu)
    value = dict(zip((o["offer_id"] for o in models.nbo.meta.offers), models.nbo.meta.unit_values(), strict=True))
    cost = {o["offer_id"]: float(o["cost"]) for o in models.nbo.meta.offers}
    budget = budget_per_customer * n
    choices = baseline_choices(frame, pairs_all, budget, seed)
    best = choices.pop("_best_single_offer")["offer"]
    ids = list(frame["customer_id"].astype(str))
    terms = {p: dr_policy_terms([choices[p].get(c) for c in ids], dr, value, cost) for p in POLICIES}
    out: dict[str, Any] = {"customers": n, "budget": budget, "best_single_offer": best, "choices": choices}
    # How close the greedy choice is to the best any choice could do, by the models' own value saved.
    _, greedy, bound = knapsack(pairs_all[pairs_all["allowed"] & (pairs_all["value_saved"] > 0)], budget)
    out["knapsack"] = {"greedy": greedy, "lp_bound": bound, "share_of_bound": greedy / bound if bound > 0 else 1.0}
    for p in POLICIES:
        est = mean_interval(terms[p])
        out[p] = {"per_customer": est, "total": est.scaled(n), "contacted": len(choices[p])}
    for p in POLICIES[1:]:
        out[f"diff_{p}"] = mean_interval(terms["value_saved"] - terms[p]).scaled(n)
    return out


def evaluate(
    con: Any, models: Champions, cut: datetime, budget_per_customer: float, window_days: int, seed: int = 0
) -> dict[str, Any]:
    """:func:`compare_targeting` on the offers logged in ``[cut, cut + window)`` (first offer per customer).

    Returns:
        The figures, or ``{"skipped": why}`` when fewer than 100 randomised offers (with a control arm) exist.
    """
    outcomes = build_offer_outcomes(con, cut, window_days)
    if len(outcomes) < 100 or CONTROL_OFFER not in set(outcomes["offer_id"]):
        return {"skipped": f"{len(outcomes)} logged offers in [{cut:%Y-%m-%d}, +{window_days}d) or no control arm"}
    frame = build_features(con, cut, FeatureConfig())
    frame = frame.merge(outcomes[["customer_id", "offer_id", "accepted", "revenue", "propensity"]], on="customer_id")
    frame = frame.rename(columns={"offer_id": "logged_offer"}).reset_index(drop=True)
    out = compare_targeting(frame, models, budget_per_customer, seed)
    out["cut"] = cut.isoformat()
    trained = models.nbo.meta.trained_as_of
    out["in_sample"] = bool(trained and datetime.fromisoformat(str(trained)) > cut)
    return out


def _reason(row: pd.Series) -> str:
    churn = f"{row.churn_probability:.0%} churn risk" if pd.notna(row.churn_probability) else "churn risk unknown"
    value = f"value {row.cltv:,.0f} over the CLTV horizon" if pd.notna(row.cltv) else "value unknown"
    return (
        f"{churn}, {value}: {row.offer_id} is expected to earn {row.value_saved:,.2f} more than no contact, "
        f"after its cost of {row.cost:,.2f}"
    )


def _decision(
    row: pd.Series,
    features: dict[str, Any],
    t: datetime,
    versions: dict[str, int],
    now: float,
    withheld: str | None = None,
) -> dict[str, Any]:
    offer = None if withheld else row.offer_id
    churn = None if pd.isna(row.churn_probability) else float(row.churn_probability)
    return {
        "decision_id": new_decision_id(),
        "ts": now,
        "customer_id": row.customer_id,
        "endpoint": "target",
        "context": {"channel": CHANNEL},
        "model_versions": versions,
        "as_of": t.isoformat(),
        CHURN.name: {"probability": churn, "risk_band": risk_band(churn) if churn is not None else None},
        CLTV.name: {"value": None if pd.isna(row.cltv) else float(row.cltv)},
        NEXT_BEST_OFFER.name: {
            "offer_id": offer,
            "expected_value": float(row.value_saved) if offer else 0.0,
            "cost": float(row.cost) if offer else 0.0,
            "reason": withheld,
            "would_offer": row.offer_id if withheld else None,
        },
        "propensity": 1.0,
        "offer_id": offer or CONTROL_OFFER,
        "pre_value": features.get("monetary_365d"),
    }


def run_target(
    data_dir: Path,
    as_of: datetime | None,
    budget: float,
    out: Path,
    settings: Settings,
    dry_run: bool = False,
    eval_window_days: int = EVAL_WINDOW_DAYS,
    seed: int = 0,
) -> TargetResult:
    """Choose the campaign, write ``out`` atomically, log the picks (unless ``dry_run``) and the MLflow run.

    Raises:
        ValueError: a negative or non-finite budget, or no offer model.
        features.policy.PolicyError: ``policy.yaml`` is bad.
    """
    if not math.isfinite(budget) or budget < 0:
        raise ValueError(f"--budget {budget}: must be a finite number >= 0 (in the catalog's cost units)")
    policy = load_policy(settings.home)
    models = load_champions(settings)
    con, _ = load_data_dir(Path(data_dir))
    t = as_of or default_as_of(con)
    frame = build_features(con, t, FeatureConfig())
    require_population(con, frame, t)
    frame = frame.reset_index(drop=True)
    pairs = score_pairs(frame, models)
    pairs = pairs[pairs["allowed"] & (pairs["value_saved"] > 0)]
    withheld: dict[str, int] = {"holdout": 0, "opted_out": 0, "contact_cap": 0}
    ids = pairs["customer_id"].drop_duplicates().tolist()
    reasons = {c: policy.before_contacts(c) for c in ids}
    now = time.time()
    if policy.cap is not None:
        dlog = open_decision_log(settings)
        try:
            counted = dlog.contacts([c for c in ids if reasons[c] is None], window_start(now, policy.cap))
        finally:
            dlog.close()
        for c, k in counted.items():
            if k >= policy.cap.count:
                reasons[c] = "contact_cap"
    for r in reasons.values():
        if r is not None:
            withheld[r] += 1
    free = pairs[pairs["customer_id"].map(reasons).isna()]
    chosen, total, bound = knapsack(free, budget)
    campaign = free.loc[chosen].sort_values("value_saved", ascending=False)
    campaign = campaign.assign(reason=[_reason(r) for r in campaign.itertuples()])[COLUMNS].reset_index(drop=True)
    write_frame(campaign, out)
    # The holdout customers the campaign would have picked (their best offer at least as good per cost as the last
    # pick): logged as held-out decisions, they are the comparison group of `cxpredict roi`.
    held = pairs[pairs["customer_id"].map(reasons) == "holdout"]
    held = held.sort_values("value_saved", ascending=False).drop_duplicates("customer_id")
    if len(campaign):
        ratio = (campaign["value_saved"] / campaign["cost"].where(campaign["cost"] > 0, np.nan)).min()
        held = held[(held["value_saved"] / held["cost"].where(held["cost"] > 0, np.nan)).fillna(np.inf) >= ratio]
    else:
        held = held.iloc[0:0]
    logged = 0
    if not dry_run:
        rows = frame.set_index(frame["customer_id"].astype(str))
        records = [
            _decision(r, rows.loc[r.customer_id].to_dict(), t, models.versions, now) for r in campaign.itertuples()
        ]
        records += [
            _decision(r, rows.loc[r.customer_id].to_dict(), t, models.versions, now, "holdout")
            for r in held.itertuples()
        ]
        dlog = open_decision_log(settings)
        try:
            dlog.submit(records).result()
        finally:
            dlog.close()
        logged = len(records)
    evaluation = evaluate_baselines(con, settings, models, t, budget / max(len(frame), 1), eval_window_days, seed)
    result = TargetResult(
        campaign=campaign,
        as_of=t,
        budget=budget,
        spent=float(campaign["cost"].sum()),
        value_saved=float(campaign["value_saved"].sum()),
        upper_bound=bound,
        withheld=withheld,
        logged=logged,
        evaluation=evaluation,
    )
    result.run_id = _log_run(settings, result, models, dry_run, len(held))
    return result


def evaluate_baselines(
    con: Any,
    settings: Settings,
    models: Champions,
    t: datetime,
    budget_per_customer: float,
    window_days: int,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`evaluate` out of sample: after the offer model's training data, else on its training holdout.

    The offers logged in the ``window_days`` after the champion's training data are preferred: the champion itself
    decides them. Where there are too few (``target`` right after ``train`` on the same data), the offer model's
    training holdout is used, decided by the bundle the training run fitted without it
    (:func:`features.registry.load_holdout_bundle`), since the registered version was refitted on those offers.
    ``on`` says which. On the training holdout, churn and CLTV (which rank the baselines) are their own holdout
    bundles too where logged, fitted on labels that end at their holdout cut-off T - H, and ``on`` says whether
    that is before the offers (else their rankings may have seen the outcomes; ``in_sample`` speaks of the offer
    model only).
    """
    after = evaluate(con, models, _eval_cut(models, t, window_days), budget_per_customer, window_days, seed)
    if "skipped" not in after:
        after["on"] = "offers logged after the offer model's training data, decided by the champion"
        return after
    holdout = _holdout_models(settings, models)
    if holdout is None:
        return {
            "skipped": f"{after['skipped']}, and the offer model logged no training holdout to evaluate on (it has "
            "one only where its offers span several windows and were split in time)"
        }
    start = datetime.fromisoformat(str(holdout.nbo.meta.trained_as_of))
    end = datetime.fromisoformat(str(models.nbo.meta.trained_as_of))
    out = evaluate(con, holdout, start, budget_per_customer, max(1, (end - start).days), seed)
    if "skipped" in out:
        return {"skipped": f"{after['skipped']}; on the offer model's training holdout: {out['skipped']}"}
    out["on"] = (
        f"the offer model's training holdout (offers from {start:%Y-%m-%d} to {end:%Y-%m-%d}), decided by the offer "
        "model its training run fitted without them" + _rankings_note(holdout, start)
    )
    return out


def _holdout_models(settings: Settings, models: Champions) -> Champions | None:
    """``models`` with each champion replaced by the bundle its training run fitted without its holdout.

    None without one for the offer model. Churn or CLTV without one keep their champion.
    """
    client = registry.configure(settings)
    found: dict[str, Bundle] = {}
    for name, version in models.versions.items():
        bundle = registry.load_holdout_bundle(client, name, version, settings.home / "models")
        if bundle is not None and bundle.meta.trained_as_of:
            found[name] = bundle
    if NEXT_BEST_OFFER.name not in found:
        return None
    return replace(
        models,
        nbo=found[NEXT_BEST_OFFER.name],
        churn=found.get(CHURN.name, models.churn),
        cltv=found.get(CLTV.name, models.cltv),
    )


def _rankings_note(models: Champions, start: datetime) -> str:
    """Whether churn and CLTV, which rank the baselines, were fitted on labels that end before ``start``."""
    parts = []
    for name, bundle in ((CHURN.name, models.churn), (CLTV.name, models.cltv)):
        if bundle is None:
            continue
        trained = bundle.meta.trained_as_of
        clean = trained is not None and datetime.fromisoformat(str(trained)) <= start
        parts.append(
            f"{name} by a model whose training labels end {str(trained)[:10]}"
            if clean
            else f"{name} by a model trained on data that covers these offers"
        )
    return "; the baselines rank " + " and ".join(parts) if parts else ""


def _eval_cut(models: Champions, t: datetime, window_days: int) -> datetime:
    """Where the baselines' logged offers start: just after the offer model's training data when known."""
    trained = models.nbo.meta.trained_as_of
    if trained:
        return datetime.fromisoformat(str(trained))
    return t - timedelta(days=window_days)


def _log_run(settings: Settings, result: TargetResult, models: Champions, dry_run: bool, held: int) -> str:
    import mlflow

    registry.configure(settings)
    registry_experiment = MLFLOW_EXPERIMENT
    mlflow.set_experiment(registry_experiment)
    with mlflow.start_run(run_name=f"target-{result.as_of:%Y%m%d}") as run:
        mlflow.log_params(
            {
                "as_of": result.as_of.isoformat(),
                "budget": result.budget,
                "dry_run": dry_run,
                **{f"{k}_version": v for k, v in models.versions.items()},
            }
        )
        metrics: dict[str, float] = {
            "chosen": float(len(result.campaign)),
            "spent": result.spent,
            "expected_value_saved": result.value_saved,
            "lp_upper_bound": result.upper_bound,
            "share_of_upper_bound": result.value_saved / result.upper_bound if result.upper_bound > 0 else 1.0,
            "holdout_logged": float(held),
            **{f"withheld_{k}": float(v) for k, v in result.withheld.items()},
        }
        ev = result.evaluation
        if "skipped" in ev:
            mlflow.set_tag("baselines", ev["skipped"])
        else:
            mlflow.set_tag("baselines_in_sample", str(ev["in_sample"]))
            mlflow.set_tag("baselines_on", ev["on"])
            mlflow.set_tag("best_single_offer", ev["best_single_offer"])
            for p in POLICIES:
                est: Estimate = ev[p]["per_customer"]
                metrics.update({f"dr_{p}": est.value, f"dr_{p}_low": est.low, f"dr_{p}_high": est.high})
            for p in POLICIES[1:]:
                est = ev[f"diff_{p}"]
                metrics.update(
                    {
                        f"dr_gain_over_{p}": est.value,
                        f"dr_gain_over_{p}_low": est.low,
                        f"dr_gain_over_{p}_high": est.high,
                    }
                )
            # The campaign's expected value saved with the interval the holdout evaluation gives per contact.
            per = ev["value_saved"]
            contacted = max(per["contacted"], 1)
            scale = len(result.campaign) / contacted
            metrics["expected_value_saved_dr"] = per["total"].value * scale
            metrics["expected_value_saved_dr_low"] = per["total"].low * scale
            metrics["expected_value_saved_dr_high"] = per["total"].high * scale
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))})
        return run.info.run_id
