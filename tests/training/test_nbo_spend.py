"""Where offers log spend, the offer policies are valued in spend too (doubly robust on the logged revenue)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.scoring import Encoder
from tests.training.test_learners import CATALOG, CONFIG, _offer_frame, planted
from training.nbo import (
    _holdout,
    fit_nbo,
    order_values,
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
    assert m["spend_value_best_single"] == pytest.approx(m["policy_value_best_single"], rel=1e-9, abs=1e-9)
    assert m["spend_value_model"] == pytest.approx(m["policy_value_model"], rel=1e-9, abs=1e-9)
    assert m["spend_value_t_learner"] == pytest.approx(m["policy_value_t_learner"], rel=1e-9, abs=1e-9)
    gain = m["policy_value_model"] - m["policy_value_best_single"]
    assert m["spend_gain_served_vs_single"] == pytest.approx(gain, rel=1e-9, abs=1e-9)


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
