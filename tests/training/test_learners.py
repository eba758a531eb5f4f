"""T-, X- and DR-learners recover a planted heterogeneous effect; the policy selector falls back to one offer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.kinds import open_bundle
from features.kinds.next_best_offer import best_offer
from features.scoring import Encoder
from training.config import EffectLearnerParams, TrainConfig, XGBParams
from training.learners import LEARNERS, LearnerParams, fit_effect_model
from training.nbo import fit_nbo, train_offer_policy
from training.policy import BEST_SINGLE, LEARNED, choose_policy, dr_scores

PARAMS = LearnerParams(n_estimators=80, effect_estimators=60, learning_rate=0.1, seed=0)


def planted(n: int, seed: int, heterogeneous: bool = True):
    """Randomized control / a / b; ``a`` lifts acceptance by 0.25 where x0 > 0 only, ``b`` by 0.25 where x0 <= 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    arm = rng.choice(np.array(["none", "a", "b"]), size=n)
    p = np.full(n, 0.1)
    hi = x[:, 0] > 0
    if heterogeneous:
        p += np.where((arm == "a") & hi, 0.25, 0.0) + np.where((arm == "b") & ~hi, 0.25, 0.0)
    else:
        p += np.where(arm == "a", 0.05, 0.0)
    y = (rng.random(n) < p).astype(float)
    return x, arm, y


@pytest.mark.parametrize("learner", LEARNERS)
def test_learner_recovers_the_planted_heterogeneous_effect(learner):
    x, arm, y = planted(6000, seed=1)
    model = fit_effect_model(learner, x, arm, y, "none", params=PARAMS)
    assert model.offers == ["a", "b"]
    xt, _, _ = planted(2000, seed=2)
    _, uplift = model.outcomes(xt)
    hi = xt[:, 0] > 0
    # Planted: a +0.25 on x0 > 0 and 0 elsewhere; b the mirror image.
    assert uplift[hi, 0].mean() == pytest.approx(0.25, abs=0.07)
    assert uplift[~hi, 0].mean() == pytest.approx(0.0, abs=0.07)
    assert uplift[~hi, 1].mean() == pytest.approx(0.25, abs=0.07)
    assert uplift[hi, 1].mean() == pytest.approx(0.0, abs=0.07)
    # The per-customer best offer is the right one for most customers.
    right = np.where(hi, 0, 1)
    assert np.mean(np.argmax(uplift, axis=1) == right) > 0.85


def test_selector_serves_learned_only_when_its_interval_clears_the_best_single():
    rng = np.random.default_rng(0)
    n = 4000
    scores = rng.normal(0.0, 1.0, size=(n, 3)) + np.array([0.0, 0.5, 0.4])
    single = np.full(n, 1)
    # A "learned" policy that is the best single offer on most rows and noise elsewhere: no real gain.
    same = np.where(rng.random(n) < 0.9, 1, 2)
    choice = choose_policy(scores, {"t": same, "s": single})
    assert choice.served == BEST_SINGLE and choice.best_single == 1
    assert choice.gain.low <= 0 < choice.gain.high or choice.gain.value <= 0
    # A policy that picks each row's better arm wins by far more than the interval.
    better = np.argmax(scores[:, 1:], axis=1) + 1
    choice = choose_policy(scores, {"t": better, "s": single})
    assert choice.served == LEARNED and choice.learner == "t" and choice.gain.low > 0


def test_dr_scores_are_unbiased_with_a_wrong_reward_model():
    rng = np.random.default_rng(3)
    n = 50_000
    a = rng.integers(0, 2, size=n)
    r = rng.random(n) < np.where(a == 1, 0.3, 0.1)
    wrong = np.full((n, 2), 0.9)
    g = dr_scores(wrong, a, np.full(n, 0.5), r.astype(float))
    assert g.mean(axis=0) == pytest.approx([0.1, 0.3], abs=0.02)
    with pytest.raises(ValueError, match="propensity"):
        dr_scores(wrong, a, np.zeros(n), r.astype(float))


def _offer_frame(x, arm, y):
    frame = pd.DataFrame({f"attr_x{i}": x[:, i].astype(float) for i in range(x.shape[1])})
    frame["customer_id"] = [f"c{i}" for i in range(len(frame))]
    frame["offer_id"] = arm
    frame["accepted"] = y
    frame["revenue"] = y * 10.0
    frame["propensity"] = np.nan
    return frame


CATALOG = pd.DataFrame({"offer_id": ["a", "b"], "value": [10.0, 10.0], "cost": [0.1, 0.1], "eligible_if": [None] * 2})
CONFIG = TrainConfig(xgb=XGBParams(n_estimators=60, max_depth=3, learning_rate=0.1))


def _train(frame: pd.DataFrame, seed: int):
    hold = np.random.default_rng(seed).random(len(frame)) < 0.4
    encoder = Encoder.fit(frame[[c for c in frame.columns if c.startswith("attr_")]])
    return train_offer_policy(frame, hold, CATALOG, CONFIG, encoder), hold


def test_without_heterogeneity_one_offer_for_all_is_served_by_the_bundle_itself(tmp_path):
    x, arm, y = planted(3000, seed=4, heterogeneous=False)
    trained, _ = _train(_offer_frame(x, arm, y), seed=0)
    final = trained.final
    assert final.meta.policy == BEST_SINGLE
    assert "best single offer" in final.meta.method and final.meta.policy_reason
    # The saved and reloaded bundle (what predict and serving load) shows offer a to everyone.
    loaded = open_bundle(final.save(tmp_path / "nbo"))
    frame = _offer_frame(*planted(300, seed=5))
    ranked = loaded.offer_scores(loaded.encoder.encode_frame(frame), frame.to_dict("records"))
    picks = {best_offer(r, has_control=True)["offer_id"] for r in ranked}
    assert picks == {"a"}
    # Training reports the served policy's value: the best single offer's, within its interval.
    m = trained.metrics
    assert m["policy_served_learned"] == 0.0
    assert m["policy_value_model_low"] <= m["policy_value_best_single"] <= m["policy_value_model_high"]


def test_with_planted_heterogeneity_the_learned_policy_is_served_and_beats_best_single():
    x, arm, y = planted(5000, seed=6)
    trained, _ = _train(_offer_frame(x, arm, y), seed=1)
    assert trained.final.meta.policy == LEARNED
    m = trained.metrics
    assert m["policy_served_learned"] == 1.0
    assert m["policy_gain_learned_vs_single_low"] > 0
    assert m["policy_value_model"] > m["policy_value_best_single"]


def test_one_offer_for_all_honours_eligibility() -> None:
    from training.policy import single_offer_picks

    # arms: none, a, b; b is best on average but row 1 may not get it, row 2 may get neither offer.
    scores = np.array([[0.0, 1.0, 3.0], [0.0, 1.0, 3.0], [0.0, 1.0, 3.0]])
    eligible = np.array([[True, True, True], [True, True, False], [True, False, False]])
    assert single_offer_picks(scores).tolist() == [2, 2, 2]
    assert single_offer_picks(scores, eligible).tolist() == [2, 1, 0]
    choice = choose_policy(scores, {"t": np.array([2, 1, 0])}, eligible=eligible)
    assert choice.gain.value == 0.0 and choice.served == BEST_SINGLE


def test_train_config_sets_the_effect_learners_tree_counts():
    x, arm, y = planted(800, seed=8)
    frame = _offer_frame(x, arm, y)
    encoder = Encoder.fit(frame[[c for c in frame.columns if c.startswith("attr_")]])
    small = CONFIG.model_copy(update={"effect_learners": EffectLearnerParams(n_estimators=7, effect_estimators=5)})
    t = fit_nbo(frame, CATALOG, small, encoder, learner="t")
    assert {b.num_boosted_rounds() for b in t.boosters.values()} == {7}
    dr = fit_nbo(frame, CATALOG, small, encoder, learner="dr")
    rounds = {name: b.num_boosted_rounds() for name, b in dr.boosters.items()}
    assert rounds.pop("control") == 7 and set(rounds.values()) == {5}
