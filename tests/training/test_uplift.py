from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.base import clone

from tests.training.offline_helpers import policy_value_ci, rank_offers
from training.uplift import OfferUpliftModel
from training.uplift_metrics import (
    auuc,
    ips_policy_value,
    qini_coefficient,
    qini_curve,
    snips_policy_value,
    uplift_at_k,
    uplift_curve,
)

ARMS = np.array(["none", "a", "b"])
BASE, EFFECT_A, EFFECT_B = 0.10, 0.15, 0.10


def true_outcome_prob(X: np.ndarray) -> np.ndarray:
    """Planted P(y=1) per arm, columns [none, a, b]."""
    n = X.shape[0]
    p = np.full((n, 3), BASE)
    p[:, 1] += EFFECT_A * (X[:, 0] > 0)
    p[:, 2] += EFFECT_B * (X[:, 1] > 0)
    return p


def simulate(n: int, seed: int, propensity: np.ndarray | None = None):
    """Randomized (or logged with given per-row propensities) 3-arm experiment."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    if propensity is None:
        arm_idx = rng.integers(0, 3, size=n)
    else:
        cum = np.cumsum(propensity(X), axis=1)
        arm_idx = (rng.random(n)[:, None] > cum).sum(axis=1)
    p = true_outcome_prob(X)[np.arange(n), arm_idx]
    y = (rng.random(n) < p).astype(np.float64)
    return X, arm_idx, ARMS[arm_idx], y


QUADRANTS = {
    # name: (mask fn, planted uplift of a, planted uplift of b)
    "x0+x1+": (lambda X: (X[:, 0] > 0) & (X[:, 1] > 0), EFFECT_A, EFFECT_B),
    "x0+x1-": (lambda X: (X[:, 0] > 0) & (X[:, 1] <= 0), EFFECT_A, 0.0),
    "x0-x1+": (lambda X: (X[:, 0] <= 0) & (X[:, 1] > 0), 0.0, EFFECT_B),
    "x0-x1-": (lambda X: (X[:, 0] <= 0) & (X[:, 1] <= 0), 0.0, 0.0),
}


@pytest.fixture(scope="module")
def planted():
    X, _, offer, y = simulate(20_000, seed=0)
    model = OfferUpliftModel(n_estimators=300, max_depth=4, learning_rate=0.1, seed=0).fit(X, offer, y)
    return X, offer, y, model


# --------------------------------------------------------------------------- model


def test_fit_learns_offers_and_control(planted):
    X, _, _, model = planted
    assert list(model.offers_) == ["a", "b"]
    assert model.has_control_ is True
    assert model.n_features_in_ == 2
    assert model.predict_outcomes(X[:5]).shape == (5, 3)
    assert model.predict_uplift(X[:5]).shape == (5, 2)


@pytest.mark.parametrize("quadrant", list(QUADRANTS))
def test_recovers_planted_heterogeneous_effect(planted, quadrant):
    X, _, _, model = planted
    mask_fn, eff_a, eff_b = QUADRANTS[quadrant]
    mask = mask_fn(X)
    mean_uplift = model.predict_uplift(X[mask]).mean(axis=0)
    np.testing.assert_allclose(mean_uplift, [eff_a, eff_b], atol=0.04)


def test_argmax_offer_matches_planted_best(planted):
    X, _, _, model = planted
    # Where some offer has a planted effect, "a" wins whenever x0 > 0 (0.15 beats 0.10).
    clear = (X[:, 0] > 0) | (X[:, 1] > 0)
    best = np.where(X[:, 0] > 0, 0, 1)
    chosen = model.predict_uplift(X[clear]).argmax(axis=1)
    assert (chosen == best[clear]).mean() > 0.80


def test_outcomes_match_planted_probabilities(planted):
    X, _, _, model = planted
    err = np.abs(model.predict_outcomes(X) - true_outcome_prob(X)).mean(axis=0)
    assert np.all(err < 0.04)


def test_serving_matrix_matches_predict_outcomes(planted):
    X, _, _, model = planted
    k = model.offers_.size
    one = X[7:8]
    mat = OfferUpliftModel.all_arms_matrix(one, k)
    assert mat.shape == (k + 1, X.shape[1] + k)
    served = model.booster_.inplace_predict(mat)
    np.testing.assert_allclose(served, model.predict_outcomes(one)[0], rtol=1e-6)


def test_design_matrix_encoding():
    X = np.arange(6, dtype=np.float64).reshape(3, 2)
    m = OfferUpliftModel.design_matrix(X, np.array([-1, 0, 1]), n_offers=2)
    assert m.dtype == np.float32
    np.testing.assert_array_equal(m[:, :2], X)
    np.testing.assert_array_equal(m[:, 2:], [[0, 0], [1, 0], [0, 1]])
    # A scalar index broadcasts to every row.
    np.testing.assert_array_equal(OfferUpliftModel.design_matrix(X, 1, n_offers=3)[:, 2:], [[0, 1, 0]] * 3)
    with pytest.raises(ValueError):
        OfferUpliftModel.design_matrix(X, np.array([0, 2, -1]), n_offers=2)
    with pytest.raises(ValueError):
        OfferUpliftModel.design_matrix(X, np.array([-2, 0, 0]), n_offers=2)


def test_all_arms_matrix_layout():
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    m = OfferUpliftModel.all_arms_matrix(X, n_offers=2)
    expected = np.array(
        [
            [1, 2, 0, 0],
            [3, 4, 0, 0],
            [1, 2, 1, 0],
            [3, 4, 1, 0],
            [1, 2, 0, 1],
            [3, 4, 0, 1],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(m, expected)


def test_no_control_falls_back_to_outcome():
    X, arm_idx, offer, y = simulate(3_000, seed=1)
    keep = arm_idx > 0
    model = OfferUpliftModel(n_estimators=30, learning_rate=0.3).fit(X[keep], offer[keep], y[keep])
    assert model.has_control_ is False
    assert list(model.offers_) == ["a", "b"]
    outcomes = model.predict_outcomes(X[:50])
    assert np.isnan(outcomes[:, 0]).all()
    uplift = model.predict_uplift(X[:50])
    np.testing.assert_array_equal(uplift, outcomes[:, 1:])
    assert np.all((uplift > 0) & (uplift < 1))


def test_deterministic_with_same_seed():
    X, _, offer, y = simulate(4_000, seed=2)
    params = {"n_estimators": 40, "learning_rate": 0.2, "seed": 123}
    p1 = OfferUpliftModel(**params).fit(X, offer, y).predict_outcomes(X)
    p2 = OfferUpliftModel(**params).fit(X, offer, y).predict_outcomes(X)
    np.testing.assert_array_equal(p1, p2)


def test_sklearn_clone_and_params():
    model = OfferUpliftModel(control="ctl", n_estimators=5, objective="reg:tweedie")
    cloned = clone(model)
    assert cloned.get_params() == model.get_params()
    assert not hasattr(cloned, "booster_")


def test_tweedie_revenue_objective():
    X, arm_idx, offer, y = simulate(3_000, seed=3)
    revenue = y * np.random.default_rng(3).gamma(2.0, 50.0, size=y.size)
    model = OfferUpliftModel(n_estimators=30, learning_rate=0.2, objective="reg:tweedie")
    outcomes = model.fit(X, offer, revenue).predict_outcomes(X[:100])
    assert np.all(outcomes >= 0)
    assert np.isfinite(model.predict_uplift(X[:100])).all()


def test_sample_weight_is_accepted():
    X, _, offer, y = simulate(2_000, seed=4)
    w = np.random.default_rng(4).uniform(0.5, 2.0, size=y.size)
    model = OfferUpliftModel(n_estimators=10).fit(X, offer, y, sample_weight=w)
    assert model.predict_uplift(X[:3]).shape == (3, 2)


def test_fit_validation_errors():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="no treated rows"):
        OfferUpliftModel().fit(X, np.array(["none"] * 4), np.zeros(4))
    with pytest.raises(ValueError, match="objective"):
        OfferUpliftModel(objective="reg:squarederror").fit(X, np.array(["a"] * 4), np.zeros(4))
    with pytest.raises(ValueError):
        OfferUpliftModel().fit(X, np.array(["a"] * 3), np.zeros(4))
    with pytest.raises(RuntimeError):
        OfferUpliftModel().predict_uplift(X)


# --------------------------------------------------------------------------- rank_offers


def test_rank_offers_hand_computed():
    uplift = np.array([[0.10, 0.20, 0.05], [0.30, 0.10, 0.00]])
    value = np.array([100.0, 50.0, 1000.0])
    cost = np.array([1.0, 2.0, 10.0])
    eligible = np.array([[True, True, True], [True, True, False]])
    order, values = rank_offers(uplift, value, cost, eligible)
    np.testing.assert_allclose(values[0], [9.0, 8.0, 40.0])
    np.testing.assert_allclose(values[1, :2], [29.0, 3.0])
    assert values[1, 2] == -np.inf
    np.testing.assert_array_equal(order, [[2, 0, 1], [0, 1, 2]])


def test_rank_offers_ties_are_stable():
    order, _ = rank_offers(np.ones((1, 3)), 1.0, 0.0, np.ones((1, 3), dtype=bool))
    np.testing.assert_array_equal(order, [[0, 1, 2]])


# --------------------------------------------------------------------------- curve metrics

# Sorted by score: treated=[1,0,1,0], y=[1,0,0,1].
TINY_SCORE = np.array([0.6, 0.9, 0.7, 0.8])
TINY_T = np.array([False, True, True, False])
TINY_Y = np.array([1.0, 1.0, 0.0, 0.0])


def test_qini_curve_hand_computed():
    fraction, qini = qini_curve(TINY_SCORE, TINY_T, TINY_Y)
    np.testing.assert_allclose(fraction, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(qini, [0, 1, 1, 1, 0])


def test_qini_curve_rescales_control_by_group_sizes():
    # Sorted: treated=[1,1,0,0,1], y=[1,1,0,1,0]. At k=5: 2 - 1 * 3/2 = 0.5.
    score = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    treated = np.array([1, 1, 0, 0, 1], dtype=bool)
    y = np.array([1.0, 1.0, 0.0, 1.0, 0.0])
    perm = np.array([3, 0, 4, 2, 1])
    _, qini = qini_curve(score[perm], treated[perm], y[perm])
    np.testing.assert_allclose(qini, [0, 1, 2, 2, 1, 0.5])


def test_qini_coefficient_hand_computed():
    # Trapezoid area of [0,1,1,1,0] over quarters is 0.75, random line ends at 0; / n=4.
    assert qini_coefficient(TINY_SCORE, TINY_T, TINY_Y) == pytest.approx(0.1875)


def test_uplift_curve_and_auuc_hand_computed():
    _, curve = uplift_curve(TINY_SCORE, TINY_T, TINY_Y)
    # k=1 has no control row; k=2: (1-0)*2; k=3: (0.5-0)*3; k=4: (0.5-0.5)*4.
    np.testing.assert_allclose(curve, [0, 0, 2, 1.5, 0])
    assert auuc(TINY_SCORE, TINY_T, TINY_Y) == pytest.approx(0.875 / 4)


def test_uplift_at_k_hand_computed():
    assert uplift_at_k(TINY_SCORE, TINY_T, TINY_Y, k=0.5) == pytest.approx(1.0)
    assert uplift_at_k(TINY_SCORE, TINY_T, TINY_Y, k=0.75) == pytest.approx(0.5)
    assert uplift_at_k(TINY_SCORE, TINY_T, TINY_Y, k=1.0) == pytest.approx(0.0)
    assert math.isnan(uplift_at_k(TINY_SCORE, TINY_T, TINY_Y, k=0.25))
    with pytest.raises(ValueError):
        uplift_at_k(TINY_SCORE, TINY_T, TINY_Y, k=0.0)


def test_curve_metric_input_validation():
    with pytest.raises(ValueError):
        qini_curve(np.zeros(3), np.zeros(2, dtype=bool), np.zeros(3))
    with pytest.raises(ValueError):
        auuc(np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0))


def test_perfect_ranking_beats_random_ranking(planted):
    X, offer, y, model = planted
    keep = offer != "b"  # offer "a" vs control
    Xa, treated, ya = X[keep], offer[keep] == "a", y[keep]
    true_tau = true_outcome_prob(Xa)[:, 1] - true_outcome_prob(Xa)[:, 0]
    random_score = np.random.default_rng(9).random(ya.size)
    q_perfect = qini_coefficient(true_tau, treated, ya)
    q_random = qini_coefficient(random_score, treated, ya)
    q_model = qini_coefficient(model.predict_uplift(Xa)[:, 0], treated, ya)
    # Perfect: the Qini curve climbs to ~0.15 * N_t / 2 by the half-way cut, then is flat
    # (ATE 0.075), so the area over the random line is ~0.075 / 8 per row ~= 0.0094.
    assert q_perfect == pytest.approx(0.075 / 8, abs=0.003)
    assert abs(q_random) < 0.003
    assert q_perfect > q_random + 0.005
    assert q_model > q_random + 0.005
    assert auuc(true_tau, treated, ya) > auuc(random_score, treated, ya)
    # Planted uplift in the top 30% (all x0 > 0) is 0.15.
    assert uplift_at_k(true_tau, treated, ya, k=0.3) == pytest.approx(EFFECT_A, abs=0.04)


# --------------------------------------------------------------------------- policy value


def test_ips_and_snips_hand_computed():
    logged = np.array(["a", "b", "a", "none"])
    prop = np.array([0.5, 0.25, 0.5, 0.25])
    reward = np.array([1.0, 1.0, 0.0, 1.0])
    chosen = np.array(["a", "a", "a", "none"])
    # weights [2, 0, 2, 4], weighted rewards [2, 0, 0, 4].
    assert ips_policy_value(chosen, logged, prop, reward) == pytest.approx(1.5)
    assert ips_policy_value(chosen, logged, prop, reward, snips=True) == pytest.approx(0.75)
    assert snips_policy_value(chosen, logged, prop, reward) == pytest.approx(0.75)
    est, low, high = policy_value_ci(chosen, logged, prop, reward)
    se = np.std([2.0, 0.0, 0.0, 4.0], ddof=1) / 2.0
    assert est == pytest.approx(1.5)
    assert low == pytest.approx(1.5 - 1.959964 * se, rel=1e-5)
    assert high == pytest.approx(1.5 + 1.959964 * se, rel=1e-5)


def test_ips_validation():
    with pytest.raises(ValueError):
        ips_policy_value(np.array(["a"]), np.array(["a"]), np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError):
        ips_policy_value(None, np.array(["a"]), np.array([0.5]), np.array([1.0]))
    with pytest.raises(ValueError):
        policy_value_ci(np.array(["a"]), np.array(["a"]), np.array([0.5]), np.array([1.0]), method="x")


def logging_propensity(X: np.ndarray) -> np.ndarray:
    """Non-uniform logging policy over [none, a, b] that depends on x0."""
    return np.where((X[:, 0] > 0)[:, None], [0.2, 0.5, 0.3], [0.4, 0.3, 0.3])


@pytest.fixture(scope="module")
def logged():
    X, arm_idx, offer, y = simulate(60_000, seed=5, propensity=logging_propensity)
    prop = logging_propensity(X)[np.arange(X.shape[0]), arm_idx]
    return X, offer, prop, y


def test_ips_recovers_true_policy_value(logged):
    X, offer, prop, y = logged
    best_idx = np.where(X[:, 0] > 0, 1, np.where(X[:, 1] > 0, 2, 0))
    chosen = ARMS[best_idx]
    true_value = true_outcome_prob(X)[np.arange(X.shape[0]), best_idx].mean()
    assert ips_policy_value(chosen, offer, prop, y) == pytest.approx(true_value, abs=0.012)
    assert snips_policy_value(chosen, offer, prop, y) == pytest.approx(true_value, abs=0.012)
    for method in ("normal", "bootstrap"):
        _, low, high = policy_value_ci(chosen, offer, prop, y, method=method, n_bootstrap=200)
        assert low < true_value < high
        assert high - low < 0.03
    _, low, high = policy_value_ci(chosen, offer, prop, y, snips=True)
    assert low < true_value < high

    # Always-control policy: its value is the baseline rate.
    control = np.full(X.shape[0], "none")
    assert ips_policy_value(control, offer, prop, y) == pytest.approx(BASE, abs=0.012)


def test_ips_of_logging_policy_is_observed_mean(logged):
    _, offer, prop, y = logged
    value = ips_policy_value(None, offer, prop, y, target_propensity=prop)
    assert value == pytest.approx(y.mean(), rel=1e-12)
    assert snips_policy_value(None, offer, prop, y, target_propensity=prop) == pytest.approx(y.mean())
