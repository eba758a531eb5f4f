"""Tests for the scipy BG/NBD + Gamma-Gamma baselines: parameter recovery on simulated data,
the RFM summary on a hand-checked log, and the shape of the predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime
from scipy.special import beta, gamma, hyp2f1
from sklearn.exceptions import ConvergenceWarning

from features import btyd as core
from training.btyd import BetaGeoFitter, BTYDModel, GammaGammaFitter, rfm_summary

BG_PLANTED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
GG_PLANTED = {"p": 6.25, "q": 3.74, "v": 15.44}


def simulate_bgnbd(
    n: int,
    r: float,
    alpha: float,
    a: float,
    b: float,
    t_low: float,
    t_high: float,
    seed: int,
    holdout: float = 0.0,
) -> pd.DataFrame:
    """Draw (frequency, recency, T) from the BG/NBD generative story.

    Each customer buys at time 0 (which makes them appear), then as a Poisson process with
    rate lambda ~ Gamma(r, rate=alpha); after every repeat purchase they drop out with
    probability p ~ Beta(a, b). Observation ends at T ~ U(t_low, t_high). With
    ``holdout > 0`` the same customers are followed for that much longer and their
    purchases in (T, T + holdout] are returned as ``holdout_purchases``.
    """
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    big_t = rng.uniform(t_low, t_high, n)
    end = big_t + holdout
    now = np.zeros(n)
    x = np.zeros(n)
    tx = np.zeros(n)
    later = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        nxt = now[idx] + rng.exponential(1.0 / lam[idx])
        bought = nxt < end[idx]
        active[idx[~bought]] = False
        hit = idx[bought]
        now[hit] = nxt[bought]
        calib = nxt[bought] < big_t[hit]
        x[hit[calib]] += 1
        tx[hit[calib]] = nxt[bought][calib]
        later[hit[~calib]] += 1
        active[hit[rng.random(hit.size) < p[hit]]] = False
    out = pd.DataFrame({"frequency": x, "recency": tx, "T": big_t})
    if holdout > 0:
        out["holdout_purchases"] = later
    return out


def simulate_gamma_gamma(frequency: np.ndarray, p: float, q: float, v: float, seed: int) -> np.ndarray:
    """Mean spend per repeat purchase: z ~ Gamma(p, rate=nu), nu ~ Gamma(q, rate=v)."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(q, 1.0 / v, frequency.size)
    # The sum of x i.i.d. Gamma(p, nu) spends is Gamma(p*x, nu).
    x = np.maximum(frequency, 1)
    total = rng.gamma(p * x, 1.0 / nu)
    return np.where(frequency > 0, total / x, 0.0)


@pytest.fixture(scope="module")
def bg_data() -> pd.DataFrame:
    return simulate_bgnbd(10_000, **BG_PLANTED, t_low=26.0, t_high=52.0, seed=7)


@pytest.fixture(scope="module")
def bg_fitted(bg_data: pd.DataFrame) -> BetaGeoFitter:
    return BetaGeoFitter().fit(bg_data["frequency"], bg_data["recency"], bg_data["T"])


def _rel(fitted: float, planted: float) -> float:
    return abs(fitted - planted) / planted


# --- BG/NBD ------------------------------------------------------------------


def test_bgnbd_recovers_planted_parameters(bg_fitted: BetaGeoFitter) -> None:
    got = bg_fitted.params_
    assert set(got) == {"r", "alpha", "a", "b"}
    assert _rel(got["r"], BG_PLANTED["r"]) < 0.15, got
    assert _rel(got["alpha"], BG_PLANTED["alpha"]) < 0.20, got
    assert _rel(got["a"], BG_PLANTED["a"]) < 0.25, got
    assert _rel(got["b"], BG_PLANTED["b"]) < 0.25, got
    # The mean purchase rate r/alpha is what the data pin down best.
    assert _rel(got["r"] / got["alpha"], BG_PLANTED["r"] / BG_PLANTED["alpha"]) < 0.08, got


def test_bgnbd_fit_beats_planted_likelihood(bg_data: pd.DataFrame, bg_fitted: BetaGeoFitter) -> None:
    planted = np.log([BG_PLANTED[k] for k in ("r", "alpha", "a", "b")])
    ll_planted = BetaGeoFitter._log_likelihood(
        planted, *(bg_data[c].to_numpy() for c in ("frequency", "recency", "T"))
    )[0]
    assert np.isfinite(bg_fitted.log_likelihood_)
    assert bg_fitted.log_likelihood_ >= ll_planted.sum() - 1e-6


def test_bgnbd_analytic_gradient_matches_finite_differences(bg_data: pd.DataFrame) -> None:
    sub = bg_data.iloc[:500]
    args = (sub["frequency"].to_numpy(), sub["recency"].to_numpy(), sub["T"].to_numpy())
    model = BetaGeoFitter(penalizer=0.01)
    theta = np.log([0.5, 3.0, 1.2, 2.0])
    analytic = model._objective(theta, *args)[1]
    numeric = approx_fprime(theta, lambda th: model._objective(th, *args)[0], 1e-7)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_bgnbd_likelihood_matches_hand_evaluation() -> None:
    # Eq. (6) of Fader, Hardie & Lee (2005) evaluated term by term without logs, at their
    # CDNOW estimates, for one repeat buyer.
    x, tx, big_t = np.array([2.0]), np.array([30.43]), np.array([38.86])
    theta = np.log([BG_PLANTED[k] for k in ("r", "alpha", "a", "b")])
    got = BetaGeoFitter._log_likelihood(theta, x, tx, big_t)[0][0]
    r, alpha, a, b = (BG_PLANTED[k] for k in ("r", "alpha", "a", "b"))
    a1 = gamma(r + x[0]) * alpha**r / gamma(r)
    a2 = beta(a, b + x[0]) / beta(a, b)
    a3 = (1 / (alpha + big_t[0])) ** (r + x[0])
    a4 = a / (b + x[0] - 1) * (1 / (alpha + tx[0])) ** (r + x[0])
    assert got == pytest.approx(np.log(a1 * a2 * (a3 + a4)), rel=1e-10)


def test_expected_purchases_matches_untransformed_closed_form(bg_fitted: BetaGeoFitter) -> None:
    r, alpha, a, b = (bg_fitted.params_[k] for k in ("r", "alpha", "a", "b"))
    x, tx, big_t, t = np.array([0.0, 1.0, 4.0, 10.0]), np.array([0.0, 5.0, 20.0, 30.0]), np.full(4, 32.0), 39.0
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
    num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp)
    den = 1 + (x > 0) * a / (b + x - 1) * ((alpha + big_t) / (alpha + tx)) ** (r + x)
    np.testing.assert_allclose(bg_fitted.expected_purchases(t, x, tx, big_t), num / den, rtol=1e-8)


def test_quadrature_fallback_agrees_with_closed_form(bg_fitted: BetaGeoFitter) -> None:
    # The fallback used where hyp2f1 breaks down must compute the same quantity.
    x, tx, big_t = np.array([0.0, 1.0, 4.0, 40.0, 300.0]), np.array([0.0, 5.0, 20.0, 31.0, 31.5]), np.full(5, 32.0)
    closed = bg_fitted.expected_purchases(39.0, x, tx, big_t)
    quad = core._alive_purchases_by_quadrature(bg_fitted._core_params(), np.full(5, 39.0), x, big_t)
    quad = quad * bg_fitted.p_alive(x, tx, big_t)
    np.testing.assert_allclose(quad, closed, rtol=1e-8)
    # a == 1 makes the closed form 0/0; the result must be continuous across it.
    near = [BetaGeoFitter() for _ in range(3)]
    for model, a in zip(near, (1.0 - 1e-3, 1.0, 1.0 + 1e-3), strict=True):
        model.params_ = {**bg_fitted.params_, "a": a}
    below, at, above = (m.expected_purchases(39.0, x, tx, big_t) for m in near)
    assert np.all(np.isfinite(at))
    np.testing.assert_allclose(at, (below + above) / 2, rtol=1e-3)


def test_expected_purchases_and_p_alive_are_sane(bg_fitted: BetaGeoFitter, bg_data: pd.DataFrame) -> None:
    args = [bg_data[c].to_numpy()[:2000] for c in ("frequency", "recency", "T")]
    horizons = [0.0, 1.0, 4.0, 13.0, 52.0, 520.0]
    preds = np.stack([bg_fitted.expected_purchases(t, *args) for t in horizons])
    assert np.all(np.isfinite(preds))
    np.testing.assert_allclose(preds[0], 0.0, atol=1e-12)
    assert np.all(np.diff(preds, axis=0) > 0)

    alive = bg_fitted.p_alive(*args)
    assert np.all((alive >= 0) & (alive <= 1))
    assert np.all(alive[args[0] == 0] == 1.0)
    # A long silence after a burst of purchases must lower P(alive).
    early = bg_fitted.p_alive([5, 5], [30.0, 5.0], [32.0, 32.0])
    assert early[0] > early[1]
    # Very heavy buyers stay finite (the raw hypergeometric form overflows here).
    heavy = bg_fitted.expected_purchases(52.0, [300.0], [31.5], [32.0])
    assert np.isfinite(heavy).all() and heavy[0] > 100


def test_expected_purchases_aggregate_matches_holdout() -> None:
    # Fit on a 39-week calibration window and forecast what the same customers buy in the
    # next 39 weeks; the base-wide total is what a BTYD baseline is mostly used for.
    data = simulate_bgnbd(8_000, **BG_PLANTED, t_low=30.0, t_high=39.0, seed=3, holdout=39.0)
    bgf = BetaGeoFitter().fit(data["frequency"], data["recency"], data["T"])
    predicted = bgf.expected_purchases(39.0, data["frequency"], data["recency"], data["T"])
    assert predicted.sum() == pytest.approx(data["holdout_purchases"].sum(), rel=0.15)
    # Customers who bought more in calibration are predicted, and observed, to buy more.
    heavy = data["frequency"].to_numpy() >= 3
    assert predicted[heavy].mean() > 3 * predicted[~heavy].mean()
    assert data["holdout_purchases"][heavy].mean() > 3 * data["holdout_purchases"][~heavy].mean()


def test_bgnbd_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no customers"):
        BetaGeoFitter().fit([], [], [])
    with pytest.raises(ValueError, match="recency"):
        BetaGeoFitter().fit([1], [5.0], [2.0])
    with pytest.raises(ValueError, match="same length"):
        BetaGeoFitter().fit([1, 2], [1.0], [2.0])
    with pytest.raises(ValueError, match="not fitted"):
        BetaGeoFitter().p_alive([1], [1.0], [2.0])


def test_bgnbd_warns_when_a_parameter_runs_to_its_bound() -> None:
    # Everyone buys every week up to T: no dropout is ever observed, so a runs to 0.
    with pytest.warns(ConvergenceWarning, match="bound"):
        bgf = BetaGeoFitter().fit([30] * 50, [29.9] * 50, [30.0] * 50)
    # The limit model still predicts about one purchase per week for these customers.
    assert bgf.expected_purchases(10.0, [30], [29.9], [30.0])[0] == pytest.approx(10.0, rel=0.1)


# --- Gamma-Gamma -------------------------------------------------------------


@pytest.fixture(scope="module")
def gg_data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    frequency = np.concatenate([np.zeros(1_000), 1 + rng.poisson(1.0, 10_000)]).astype(float)
    monetary = simulate_gamma_gamma(frequency, **GG_PLANTED, seed=12)
    return pd.DataFrame({"frequency": frequency, "monetary_value": monetary})


def test_gamma_gamma_recovers_planted_parameters(gg_data: pd.DataFrame) -> None:
    ggf = GammaGammaFitter().fit(gg_data["frequency"], gg_data["monetary_value"])
    got = ggf.params_
    assert ggf.n_customers_ == 10_000
    # p and v are told apart only by the within-customer noise, so they are the loosest;
    # q and the mean spend p*v/(q-1) are pinned down by the spread across customers.
    assert _rel(got["p"], GG_PLANTED["p"]) < 0.25, got
    assert _rel(got["q"], GG_PLANTED["q"]) < 0.15, got
    assert _rel(got["v"], GG_PLANTED["v"]) < 0.25, got
    planted_mean = GG_PLANTED["p"] * GG_PLANTED["v"] / (GG_PLANTED["q"] - 1)
    assert _rel(got["p"] * got["v"] / (got["q"] - 1), planted_mean) < 0.05, got


def test_gamma_gamma_analytic_gradient_matches_finite_differences(gg_data: pd.DataFrame) -> None:
    sub = gg_data[gg_data["frequency"] > 0].iloc[:500]
    args = (sub["frequency"].to_numpy(), sub["monetary_value"].to_numpy())
    model = GammaGammaFitter(penalizer=0.01)
    theta = np.log([3.0, 2.5, 10.0])
    analytic = model._objective(theta, *args)[1]
    numeric = approx_fprime(theta, lambda th: model._objective(th, *args)[0], 1e-7)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_gamma_gamma_expected_value_shrinks_towards_population_mean(gg_data: pd.DataFrame) -> None:
    ggf = GammaGammaFitter().fit(gg_data["frequency"], gg_data["monetary_value"])
    p, q, v = (ggf.params_[k] for k in ("p", "q", "v"))
    population = p * v / (q - 1)
    got = ggf.expected_average_value([0, 1, 50, 2], [0.0, 100.0, 100.0, 1.0])
    assert got[0] == pytest.approx(population)
    # One purchase of 100 is pulled towards the mean more than fifty purchases averaging 100.
    assert population < got[1] < got[2] < 100.0
    assert 1.0 < got[3] < population


def test_gamma_gamma_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least two customers"):
        GammaGammaFitter().fit([0, 0, 3], [0.0, 0.0, 10.0])
    with pytest.raises(ValueError, match="NaN"):
        GammaGammaFitter().fit([1, 2], [np.nan, 3.0])


# --- RFM summary ---------------------------------------------------------------


def test_rfm_summary_known_values() -> None:
    tx = pd.DataFrame(
        [
            # c1: two lines on day 1 merge into one purchase (30); a same-day return is not counted.
            ("c1", "2024-01-01 09:00", 10.0),
            ("c1", "2024-01-01 17:30", 20.0),
            ("c1", "2024-01-08 12:00", 40.0),
            ("c1", "2024-01-08 12:05", -5.0),
            ("c1", "2024-01-22 08:00", 60.0),
            ("c1", "2024-01-29 00:00", 999.0),  # at as_of: ignored
            # c2: one purchase, then only a return and a zero-amount row.
            ("c2", "2024-01-15 10:00", 25.0),
            ("c2", "2024-01-20 10:00", -25.0),
            ("c2", "2024-01-21 10:00", 0.0),
            # c3: only returns and purchases after as_of -> absent.
            ("c3", "2024-01-10 10:00", -3.0),
            ("c3", "2024-02-10 10:00", 50.0),
        ],
        columns=["customer_id", "ts", "amount"],
    )
    tx["ts"] = pd.to_datetime(tx["ts"])
    out = rfm_summary(tx, pd.Timestamp("2024-01-29"), time_unit_days=7.0)

    assert list(out.columns) == ["frequency", "recency", "T", "monetary_value"]
    assert list(out.index) == ["c1", "c2"]
    assert out.index.name == "customer_id"
    assert out.loc["c1"].to_dict() == pytest.approx({"frequency": 2, "recency": 3, "T": 4, "monetary_value": 50})
    assert out.loc["c2"].to_dict() == pytest.approx({"frequency": 0, "recency": 0, "T": 2, "monetary_value": 0})

    in_days = rfm_summary(tx, pd.Timestamp("2024-01-29"), time_unit_days=1.0)
    assert in_days.loc["c1", "recency"] == 21 and in_days.loc["c1", "T"] == 28


def test_rfm_summary_edge_cases() -> None:
    empty = rfm_summary(
        pd.DataFrame({"customer_id": [], "ts": pd.to_datetime([]), "amount": []}), pd.Timestamp("2024-01-01")
    )
    assert empty.empty and list(empty.columns) == ["frequency", "recency", "T", "monetary_value"]
    with pytest.raises(ValueError, match="amount"):
        rfm_summary(pd.DataFrame({"customer_id": [1], "ts": [pd.Timestamp("2024-01-01")]}), pd.Timestamp("2024-02-01"))


# --- BTYDModel wrapper ---------------------------------------------------------


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    data = simulate_bgnbd(4_000, **BG_PLANTED, t_low=26.0, t_high=52.0, seed=21)
    data["monetary_value"] = simulate_gamma_gamma(data["frequency"].to_numpy(), **GG_PLANTED, seed=22)
    data.index = pd.Index([f"c{i}" for i in range(len(data))], name="customer_id")
    return data


def test_btyd_model_end_to_end(summary: pd.DataFrame) -> None:
    model = BTYDModel(time_unit_days=7.0)
    assert model.fit(summary) is model
    assert set(model.bg_.params_) == {"r", "alpha", "a", "b"}

    spend = model.predict_spend(summary, horizon_days=364)
    assert spend.index.equals(summary.index)
    assert np.all(np.isfinite(spend)) and np.all(spend >= 0)
    expected = model.bg_.expected_purchases(
        52.0, summary["frequency"], summary["recency"], summary["T"]
    ) * model.gg_.expected_average_value(summary["frequency"], summary["monetary_value"])
    np.testing.assert_allclose(spend.to_numpy(), expected)

    clv = model.predict_clv(summary, horizon_days=364)
    np.testing.assert_allclose(clv.to_numpy(), spend.to_numpy(), rtol=1e-10)
    discounted = model.predict_clv(summary, horizon_days=364, annual_discount=0.1)
    assert np.all(discounted.to_numpy() <= spend.to_numpy() + 1e-12)
    assert np.all(discounted.to_numpy() >= spend.to_numpy() / 1.1 - 1e-12)

    alive = model.p_alive(summary)
    assert alive.between(0, 1).all()
    assert (alive[summary["frequency"] == 0] == 1).all()


def test_btyd_model_errors(summary: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="empty"):
        BTYDModel().fit(summary.iloc[:0])
    with pytest.raises(ValueError, match="not fitted"):
        BTYDModel().predict_spend(summary, 30)
    with pytest.raises(ValueError, match="lacks column"):
        BTYDModel().fit(summary.drop(columns="monetary_value"))


def test_btyd_model_on_rfm_summary_output() -> None:
    # The wrapper must accept rfm_summary's output as is, including one-time buyers.
    rng = np.random.default_rng(5)
    start = pd.Timestamp("2023-01-01")
    n_lines = rng.integers(1, 10, 600)
    lifetime = rng.uniform(20.0, 365.0, 600)
    tx = pd.DataFrame(
        {
            "customer_id": np.repeat([f"c{i}" for i in range(600)], n_lines),
            # Each customer buys only during a random active spell, so dropout is visible.
            "ts": start + pd.to_timedelta(rng.random(n_lines.sum()) * np.repeat(lifetime, n_lines), unit="D"),
            "amount": rng.gamma(5.0, 8.0, n_lines.sum()),
        }
    )
    summ = rfm_summary(tx, pd.Timestamp("2024-01-01"))
    assert (summ["frequency"] == 0).any() and len(summ) == 600
    model = BTYDModel(bg_penalizer=0.001, gg_penalizer=0.001).fit(summ)
    spend = model.predict_spend(summ, 90)
    assert spend.index.equals(summ.index)
    assert np.isfinite(spend).all() and spend.ge(0).all()


def test_p_no_purchase_matches_who_stays_quiet_in_a_simulated_holdout() -> None:
    # Churn as the contract defines it (no purchase in the next H) is what the BG/NBD churn baseline scores.
    data = simulate_bgnbd(8_000, **BG_PLANTED, t_low=30.0, t_high=39.0, seed=5, holdout=13.0)
    bgf = BetaGeoFitter().fit(data["frequency"], data["recency"], data["T"])
    quiet = bgf.p_no_purchase(13.0, data["frequency"], data["recency"], data["T"])
    observed = (data["holdout_purchases"] == 0).to_numpy()
    assert quiet.mean() == pytest.approx(observed.mean(), abs=0.02)
    # Right for one-time, occasional and frequent buyers alike, not only on average.
    freq = data["frequency"].to_numpy()
    for group in (freq == 0, (freq >= 1) & (freq <= 2), freq >= 3):
        assert quiet[group].mean() == pytest.approx(observed[group].mean(), abs=0.04)
    # No time, no purchase; over a long time only the customers who dropped out stay quiet.
    x, tx, big_t = data["frequency"], data["recency"], data["T"]
    assert np.allclose(bgf.p_no_purchase(0.0, x, tx, big_t), 1.0)
    # (The slowest buyers take long: with r near 0.24 the quiet share among the alive decays like t ** -0.24.)
    assert np.allclose(bgf.p_no_purchase(1e40, x, tx, big_t), 1.0 - bgf.p_alive(x, tx, big_t), atol=1e-6)
