"""The offer policy's value is the value saved over no contact, and the served policy matches one offer for all."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.kinds.next_best_offer import best_offer
from features.scoring import Encoder
from training.config import TrainConfig, XGBParams
from training.nbo import chosen_arms, train_offer_policy
from training.policy import average_uplift, incremental_scores

CONFIG = TrainConfig(xgb=XGBParams(n_estimators=40, max_depth=3, learning_rate=0.1))
BASE = 0.4  # customers "accept" (buy in the window) this often without any offer
#: ``a`` lifts acceptance by 0.2 but only customers with x0 > 0 may get it; ``b`` lifts nobody. Value 10, cost 1:
#: a's value saved is 0.2 x 10 - 1 = +1, b's 0 x 10 - 1 = -1 (yet b's acceptance x value - cost is 0.4 x 10 - 1 = +3).
CATALOG = pd.DataFrame(
    {"offer_id": ["a", "b"], "value": [10.0, 10.0], "cost": [1.0, 1.0], "eligible_if": ["attr_x0 > 0", None]}
)


def planted(n: int, seed: int) -> pd.DataFrame:
    """Randomised none / a / b with the effects above, as an offer frame."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    arm = rng.choice(np.array(["none", "a", "b"]), size=n)
    y = (rng.random(n) < BASE + np.where(arm == "a", 0.2, 0.0)).astype(float)
    frame = pd.DataFrame({"attr_x0": x[:, 0], "attr_x1": x[:, 1]})
    frame["customer_id"] = [f"c{i}" for i in range(n)]
    frame["offer_id"] = arm
    frame["accepted"] = y
    frame["revenue"] = y * 10.0
    frame["propensity"] = np.nan
    return frame


def test_served_policy_is_worth_at_least_one_offer_for_all_where_it_withholds_an_offer_that_does_not_pay() -> None:
    frame = planted(4000, seed=0)
    hold = np.random.default_rng(1).random(len(frame)) < 0.4
    encoder = Encoder.fit(frame[["attr_x0", "attr_x1"]])
    trained = train_offer_policy(frame, hold, CATALOG, CONFIG, encoder)
    m = trained.metrics
    # The served policy is never worth less than one offer for all (the issue-16 promise), by the same estimate.
    assert m["policy_value_model"] >= m["policy_value_best_single"] - 1e-9
    # One offer for all as served: a where eligible, nothing elsewhere (b does not pay for itself).
    rows = frame[hold].reset_index(drop=True)
    served = trained.eval_bundle
    ranked = served.offer_scores(served.encoder.encode_frame(rows), rows.to_dict("records"))
    picks = np.array([(best_offer(r, True) or {"offer_id": None})["offer_id"] for r in ranked], dtype=object)
    eligible = rows["attr_x0"].to_numpy() > 0
    if served.meta["policy"] == "best_single":
        assert set(picks[eligible]) == {"a"} and set(picks[~eligible]) == {None}
    # The value is the value saved: a to the eligible half, +1 each, about +0.5 per customer (not 0.6 x 10 - 1).
    assert m["policy_value_model_low"] <= 0.5 <= m["policy_value_model_high"]
    # The hindsight best arm (chosen on the holdout itself) cannot do better here: it is the same policy.
    assert m["policy_value_best_arm_hindsight"] == pytest.approx(m["policy_value_best_single"], abs=0.3)


def test_incremental_scores_credit_an_offer_only_with_the_uplift_it_causes() -> None:
    rng = np.random.default_rng(2)
    n = 60_000
    arm = rng.integers(0, 3, size=n)  # none, a (+0.2), b (no effect)
    y = (rng.random(n) < BASE + np.where(arm == 1, 0.2, 0.0)).astype(float)
    wrong = np.full((n, 3), 0.9)  # a bad outcome model: doubly robust scores stay unbiased
    g = incremental_scores(wrong, arm, np.full(n, 1 / 3), y, value=np.array([10.0, 10.0]), cost=np.array([1.0, 1.0]))
    assert g[:, 0].tolist() == [0.0] * n
    assert g.mean(axis=0)[1:] == pytest.approx([1.0, -1.0], abs=0.25)


def test_average_uplift_of_an_offer_is_taken_over_the_customers_who_may_get_it() -> None:
    rng = np.random.default_rng(3)
    n = 40_000
    group = rng.random(n) < 0.3  # the only customers who may get "a", and the only ones it moves (+0.3)
    arm = rng.choice(np.array(["none", "a"]), size=n)
    y = (rng.random(n) < 0.2 + np.where((arm == "a") & group, 0.3, 0.0)).astype(float)
    prop = np.full(n, 0.5)
    assert average_uplift(arm, y, prop, "none")["a"] == pytest.approx(0.09, abs=0.02)  # diluted over everyone
    assert average_uplift(arm, y, prop, "none", {"a": group})["a"] == pytest.approx(0.3, abs=0.03)


def test_chosen_arms_follow_the_bundle_serving_one_offer_for_all() -> None:
    frame = planted(3000, seed=4)
    hold = np.random.default_rng(5).random(len(frame)) < 0.4
    trained = train_offer_policy(frame, hold, CATALOG, CONFIG, Encoder.fit(frame[["attr_x0", "attr_x1"]]))
    rows = frame[hold].reset_index(drop=True)
    from training.nbo import one_offer_for_all

    picks = chosen_arms(one_offer_for_all(trained.eval_bundle), rows, np.zeros(len(rows), dtype=np.intp))
    # arms: none, a, b — a to the eligible, nothing to the rest, b never.
    assert set(picks[rows["attr_x0"].to_numpy() > 0]) == {1} and set(picks[rows["attr_x0"].to_numpy() <= 0]) == {0}
