"""Where offers log spend, the offer policies are valued in spend too (doubly robust on the logged revenue)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.scoring import Encoder
from tests.training.test_learners import CATALOG, CONFIG, _offer_frame, planted
from training.nbo import (
    _holdout,
    candidate_learners,
    fit_nbo,
    order_values,
    parse_candidate,
    spend_logged,
    spend_scores,
    train_offer_policy,
    value_scores,
)


def _encoder(frame: pd.DataFrame) -> Encoder:
    return Encoder.fit(frame[[c for c in frame.columns if c.startswith("attr_")]])


def test_spend_is_logged_only_with_a_control_arm_and_a_revenue_on_every_accepted_row():
    frame = _offer_frame(*planted(400, seed=1))
    assert spend_logged(frame)
    assert not spend_logged(frame.assign(revenue=np.nan))
    assert not spend_logged(frame.assign(revenue=0.0))
    gap = frame.copy()
    gap.loc[gap.index[gap.accepted.astype(bool)][0], "revenue"] = np.nan
    assert not spend_logged(gap)
    assert not spend_logged(frame[frame.offer_id != "none"])


def test_when_revenue_is_acceptance_times_value_spend_and_acceptance_values_agree():
    x, arm, y = planted(3000, seed=6)
    frame = _offer_frame(x, arm, y)  # revenue = accepted x 10, the catalog's value of both offers
    hold = np.random.default_rng(0).random(len(frame)) < 0.4
    m = train_offer_policy(frame, hold, CATALOG, CONFIG, _encoder(frame)).metrics
    # The offers log spend: the decision is made in spend (policy_value_*), acceptance x value is beside it.
    assert m["policy_value_in_spend"] == 1.0
    assert m["acceptance_value_best_single"] == pytest.approx(m["policy_value_best_single"], rel=1e-9, abs=1e-9)
    assert m["acceptance_value_model"] == pytest.approx(m["policy_value_model"], rel=1e-9, abs=1e-9)
    for name in ("t", "t_spend", "dr_spend"):
        key = f"policy_value_{name}_learner"
        assert m[f"acceptance_value_{name}_learner"] == pytest.approx(m[key], rel=1e-9, abs=1e-9)
    gain = m["policy_value_model"] - m["policy_value_best_single"]
    assert m["acceptance_gain_served_vs_single"] == pytest.approx(gain, rel=1e-9, abs=1e-9)


def test_spend_values_see_bigger_orders_that_acceptance_misses():
    # Offer a lifts acceptance by 0.05; offer b lifts nothing but its orders are three times as big.
    x, arm, y = planted(20_000, seed=3, heterogeneous=False)
    frame = _offer_frame(x, arm, y)
    frame["revenue"] = y * np.where(arm == "b", 30.0, 10.0)
    assert order_values(frame) == pytest.approx({"none": 10.0, "a": 10.0, "b": 30.0})
    bundle = fit_nbo(frame, CATALOG, CONFIG, _encoder(frame), learner="t")
    rows, a, prop, accepted = _holdout(bundle, frame)
    by_acceptance = value_scores(bundle, rows, a, prop, accepted).mean(axis=0)
    by_spend = spend_scores(bundle, rows, a, prop, rows.revenue.to_numpy(), order_values(frame)).mean(axis=0)
    # arms: none, a, b. Acceptance x value: a 0.05 x 10 - 0.1, b -0.1. Spend: a 0.4, b 0.1 x (30 - 10) - 0.1 = 1.9.
    assert by_acceptance[1] > by_acceptance[2]
    assert by_spend[2] > by_spend[1]
    assert by_spend[2] == pytest.approx(1.9, abs=0.5)


def _spend_frame(n: int, seed: int, heterogeneous: bool) -> pd.DataFrame:
    """Randomised none / a / b; both offers lift acceptance from 0.1 to 0.2, orders are 10 without an offer.

    With ``heterogeneous``, a's orders are 30 where x0 > 0 (10 elsewhere) and b's the mirror image: acceptance
    tells the offers apart nowhere, spend everywhere. Without, b's orders are 30 for everyone and a's 10.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    arm = rng.choice(np.array(["none", "a", "b"]), size=n)
    y = (rng.random(n) < np.where(arm == "none", 0.1, 0.2)).astype(float)
    frame = _offer_frame(x, arm, y)
    hi = x[:, 0] > 0
    big = (((arm == "a") & hi) | ((arm == "b") & ~hi)) if heterogeneous else arm == "b"
    frame["revenue"] = y * np.where(big, 30.0, 10.0)
    return frame


def test_spend_candidates_join_only_where_the_offers_log_spend():
    frame = _spend_frame(600, seed=0, heterogeneous=False)
    assert candidate_learners(frame) == ("s", "t", "x", "dr")
    assert candidate_learners(frame, spend=True) == ("s", "t", "x", "dr", "t_spend", "dr_spend")
    assert candidate_learners(frame[frame.offer_id != "none"], spend=True) == ("s",)  # no control: no uplift
    assert parse_candidate("dr_spend") == ("dr", "revenue") and parse_candidate("x") == ("x", "accepted")


def test_a_spend_model_ranks_by_spend_uplift_minus_cost_and_still_reports_acceptance():
    # Acceptance: a and b lift it alike. Spend: b's orders are three times as big, so b lifts spend by 0.2 x 30 - 0.1
    # x 10 = 5 over no offer and a by 0.2 x 10 - 0.1 x 10 = 1 (each costs 0.1).
    frame = _spend_frame(12_000, seed=1, heterogeneous=False)
    spend = fit_nbo(frame, CATALOG, CONFIG, _encoder(frame), learner="t_spend")
    assert spend.meta.outcome == "revenue" and spend.meta.method == "spend uplift"
    assert spend.meta.candidate == "t_spend" and spend.meta.learner == "t"
    rows = frame.sample(300, random_state=0)
    ranked = spend.offer_scores(spend.encoder.encode_frame(rows), rows.to_dict("records"))
    cost = dict(zip(CATALOG.offer_id, CATALOG.cost, strict=True))
    for ranking in ranked:
        for r in ranking:
            assert r["expected_value"] == pytest.approx(r["uplift"] - cost[r["offer_id"]])  # money, not x value
    assert np.mean([r[0]["offer_id"] == "b" for r in ranked]) > 0.9
    b_uplift = np.mean([next(x["uplift"] for x in r if x["offer_id"] == "b") for r in ranked])
    a_uplift = np.mean([next(x["uplift"] for x in r if x["offer_id"] == "a") for r in ranked])
    assert b_uplift == pytest.approx(5.0, abs=1.0) and a_uplift == pytest.approx(1.0, abs=1.0)
    # The same learner on acceptance sees no difference between the offers; both report the acceptance itself.
    accept = fit_nbo(frame, CATALOG, CONFIG, _encoder(frame), learner="t")
    scored = accept.offer_scores(accept.encoder.encode_frame(rows), rows.to_dict("records"))
    p_accept = {(i, r["offer_id"]): r["p_accept"] for i, ranking in enumerate(scored) for r in ranking}
    assert all(r["p_accept"] == pytest.approx(p_accept[(i, r["offer_id"])]) for i, k in enumerate(ranked) for r in k)
    assert np.mean(list(p_accept.values())) == pytest.approx(0.2, abs=0.03)
    assert abs(np.mean([r[0]["offer_id"] == "b" for r in scored]) - 0.5) < 0.4


def test_where_orders_differ_by_customer_the_spend_learner_is_chosen_and_served():
    frame = _spend_frame(20_000, seed=2, heterogeneous=True)
    hold = np.random.default_rng(0).random(len(frame)) < 0.4
    trained = train_offer_policy(frame, hold, CATALOG, CONFIG, _encoder(frame))
    m, final = trained.metrics, trained.final
    assert m["policy_value_in_spend"] == 1.0
    # Per customer the right offer saves 0.2 x 30 - 0.1 x 10 - 0.1 (cost) = 4.9, the other 0.9: one offer for all
    # averages 2.9.
    assert m["policy_served_learned"] == 1.0 and m["policy_gain_learned_vs_single_low"] > 0
    assert final.meta.outcome == "revenue" and final.meta.method == "spend uplift"
    assert m["policy_value_model_low"] - 0.3 <= 4.9 <= m["policy_value_model_high"] + 0.3
    assert m["policy_value_best_single_low"] <= 2.9 <= m["policy_value_best_single_high"]
    # Acceptance x value cannot see it: the acceptance learners' policies are no better than one offer for all.
    assert m["acceptance_value_model"] == pytest.approx(m["acceptance_value_best_single"], abs=1.0)
    rows = frame[hold].reset_index(drop=True)
    ranked = final.offer_scores(final.encoder.encode_frame(rows), rows.to_dict("records"))
    right = np.where(rows.attr_x0.to_numpy() > 0, "a", "b")
    assert np.mean([r[0]["offer_id"] for r in ranked] == right) > 0.8


def test_under_one_offer_for_all_in_spend_the_offer_with_the_most_spend_is_served():
    # No heterogeneity: b saves most spend for everyone (4.9 vs 0.9), though acceptance x value ranks a and b alike.
    frame = _spend_frame(12_000, seed=3, heterogeneous=False)
    hold = np.random.default_rng(1).random(len(frame)) < 0.4
    trained = train_offer_policy(frame, hold, CATALOG, CONFIG, _encoder(frame))
    final, ev = trained.final, trained.evaluation
    assert ev.currency == "spend" and ev.best_single_offer == "b"
    if final.meta.policy == "best_single":
        # The registered bundle ranks by the spend averages the evaluation valued: b for everyone.
        assert final.meta.outcome == "revenue"
        rows = frame.head(50)
        ranked = final.offer_scores(final.encoder.encode_frame(rows), rows.to_dict("records"))
        assert {r[0]["offer_id"] for r in ranked} == {"b"}
    assert trained.metrics["policy_value_model"] >= trained.metrics["policy_value_best_single"] - 1e-9


def test_offer_value_acceptance_keeps_the_decision_in_acceptance_x_value_and_reports_spend_beside_it():
    frame = _spend_frame(6000, seed=4, heterogeneous=False)
    hold = np.random.default_rng(2).random(len(frame)) < 0.4
    config = CONFIG.model_copy(update={"offer_value": "acceptance"})
    trained = train_offer_policy(frame, hold, CATALOG, config, _encoder(frame))
    m, ev = trained.metrics, trained.evaluation
    assert ev.currency == "acceptance" and m["policy_value_in_spend"] == 0.0
    assert set(trained.candidates) == {"s", "t", "x", "dr"}  # no spend models
    assert trained.final.meta.outcome == "accepted" and trained.final.meta.method.startswith("uplift")
    assert {"spend_value_model", "spend_value_best_single", "spend_gain_served_vs_single"} <= set(m)
    # Acceptance x value cannot tell a from b (both lift acceptance by 0.1); the spend beside it can: b's saves
    # 0.2 x 30 - 0.1 x 10 - 0.1 = 4.9 per customer, a's 0.9.
    truth = 4.9 if ev.best_single_offer == "b" else 0.9
    assert m["spend_value_best_single_low"] <= truth <= m["spend_value_best_single_high"]
    assert m["policy_value_best_single_low"] <= 0.9 <= m["policy_value_best_single_high"]  # 0.1 x 10 - 0.1 either way
