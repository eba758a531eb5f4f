"""The boosters' BTYD inputs: point-in-time like the features they read, and ordered as BG/NBD says."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.btyd import GGParams
from features.btyd_inputs import (
    BGNBD_INPUTS,
    BGNBD_SUMMARY,
    GAMMA_GAMMA,
    SPEND_INPUT,
    bgnbd_inputs,
    btyd_inputs,
    input_names,
    no_purchase_logit,
)
from features.data import load_frames
from features.pipeline import build_features

T = datetime(2024, 6, 1)
#: A fit with real dropout (complete-journey-like numbers, weeks).
BG = {"r": 1.4, "alpha": 1.4, "a": 0.3, "b": 5.0, "time_unit_days": 7.0, "horizon_days": 90.0}


def _features(rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    tx = pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "ts": pd.to_datetime([T + timedelta(days=r[1]) for r in rows]),
            "amount": [r[2] for r in rows],
        }
    )
    return build_features(load_frames({"transactions": tx}), T).set_index("customer_id")


def _inputs(feats: pd.DataFrame) -> pd.DataFrame:
    cols = list(feats.columns)
    x = feats.to_numpy(dtype=np.float32, na_value=np.nan)
    return pd.DataFrame(bgnbd_inputs(x, cols, BG), index=feats.index, columns=list(BGNBD_INPUTS))


def test_rows_at_or_after_the_cutoff_change_no_bgnbd_input():
    past = [("a", -300, 10.0), ("a", -200, 15.0), ("a", -20, 5.0), ("b", -90, 30.0), ("c", -5, 0.0)]
    future = [("a", 0, 50.0), ("b", 1, 20.0), ("c", 30, 10.0), ("d", 2, 5.0)]
    before = _inputs(_features(past))
    after = _inputs(_features(past + future).loc[before.index])
    pd.testing.assert_frame_equal(before, after)
    # Not vacuous: a purchase before T does move them.
    moved = _inputs(_features([*past, ("b", -1, 20.0)]))
    assert not np.allclose(moved.loc["b"].to_numpy(), before.loc["b"].to_numpy())


def test_an_overdue_regular_buyer_is_less_alive_and_expects_fewer_orders():
    weekly = [("steady", -7 * k, 10.0) for k in range(1, 40)]
    lapsed = [("lapsed", -7 * k - 150, 10.0) for k in range(1, 40)]
    out = _inputs(_features([*weekly, *lapsed, ("once", -100, 10.0), ("nothing", -3, 0.0)]))
    alive, orders = out.columns
    assert out.loc["lapsed", alive] < out.loc["steady", alive] - 5  # log-odds: far less likely alive
    assert out.loc["lapsed", orders] < out.loc["steady", orders]
    # No repeat purchase: BG/NBD has seen no dropout yet, so P(alive) is at its upper clip; no purchase at all
    # (a zero-amount line): alive by the model, orders unknown (missing to the booster).
    assert out.loc["once", alive] == out[alive].max()
    assert out.loc["nothing", alive] == out[alive].max() and np.isnan(out.loc["nothing", orders])


def test_the_spend_input_is_expected_orders_times_the_gamma_gamma_value_per_purchase():
    gg = GGParams(p=6.0, q=4.0, v=15.0)
    feats = _features(
        [*[("big", -30 * k, 200.0) for k in range(1, 8)], *[("small", -30 * k, 5.0) for k in range(1, 8)]]
        + [("once", -100, 40.0), ("nothing", -3, 0.0)]
    )
    cols = list(feats.columns)
    x = feats.to_numpy(dtype=np.float32, na_value=np.nan)
    out = pd.DataFrame(btyd_inputs(x, cols, {**BG, GAMMA_GAMMA: gg.to_json()}), index=feats.index)
    assert list(out.columns) == [0, 1, 2] and input_names({**BG, GAMMA_GAMMA: gg.to_json()})[-1] == SPEND_INPUT
    orders = np.expm1(out[1].to_numpy(np.float64))
    freq, value = feats.bg_frequency.to_numpy(float), feats.avg_order_value.to_numpy(float)
    # Gamma-Gamma: (p v + p x m) / (p x + q - 1), the population's p v / (q - 1) without a repeat purchase.
    per_order = np.where(freq > 0, (6.0 * 15.0 + 6.0 * freq * value) / (6.0 * freq + 3.0), 6.0 * 15.0 / 3.0)
    expected = np.log1p(orders * per_order)
    np.testing.assert_allclose(out[2].to_numpy(np.float64), expected, rtol=1e-5)
    assert out.loc["big", 2] > out.loc["small", 2]  # same rhythm, forty times the value
    assert np.isnan(out.loc["nothing", 2])  # no purchase: no expected orders, so no expected spend
    # Without Gamma-Gamma parameters the spend input is left out, and the BG/NBD ones are unchanged.
    np.testing.assert_array_equal(btyd_inputs(x, cols, BG), out[[0, 1]].to_numpy(np.float32))


def _simulate_bgnbd(n: int, weeks: float, horizon: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Customers drawn from BG/NBD itself (parameters ``BG``): summaries at ``weeks`` and whether they then bought."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(BG["r"], 1.0 / BG["alpha"], n)
    dropout = rng.beta(BG["a"], BG["b"], n)
    summary, quiet = np.zeros((n, 3)), np.zeros(n, dtype=int)
    for i in range(n):
        # Every customer's first purchase at 0; after each repeat purchase they leave with probability p.
        t, last, repeats, alive, bought_later = 0.0, 0.0, 0, True, False
        while alive:
            t += rng.exponential(1.0 / rate[i])
            if t > weeks + horizon:
                break
            if t > weeks:
                bought_later = True
                break
            last, repeats = t, repeats + 1
            alive = rng.random() >= dropout[i]
        summary[i] = (repeats, last * 7.0, weeks * 7.0)
        quiet[i] = int(not bought_later)
    return summary, quiet


def test_bgnbd_no_purchase_probability_matches_customers_drawn_from_bgnbd():
    summary, quiet = _simulate_bgnbd(6000, weeks=30.0, horizon=90 / 7.0, seed=0)
    columns = list(BGNBD_SUMMARY)
    p = 1 / (1 + np.exp(-no_purchase_logit(summary, columns, BG)))
    # Calibrated where it is the true model: in total and among the customers it calls most and least at risk.
    assert abs(p.mean() - quiet.mean()) < 0.015
    order = np.argsort(p)
    for part in (order[:1500], order[-1500:]):
        assert abs(p[part].mean() - quiet[part].mean()) < 0.03
    assert roc_auc_score(quiet, p) > 0.75
    # Against P(alive) alone (which calls a quiet-but-alive customer safe) it ranks the no-purchase better.
    alive = bgnbd_inputs(summary, columns, BG)[:, 0]
    assert roc_auc_score(quiet, p) > roc_auc_score(quiet, -alive)
    # No purchase yet: no BG/NBD answer.
    assert np.isnan(no_purchase_logit(np.array([[np.nan, np.nan, 70.0]]), columns, BG)).all()
