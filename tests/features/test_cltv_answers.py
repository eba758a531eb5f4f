"""The complete CLTV answer and reasons both ways, on planted BG/NBD parameters and tiny boosters (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import hyp2f1

from features import btyd
from features.definitions import CANCELLED_FEATURE
from features.kinds import open_bundle, score_frame
from features.kinds.churn import risk_band
from features.kinds.cltv import summary_columns
from tests.serving.conftest import build_bundles, feature_frame

#: Planted parameters (weeks), the published CDNOW fit of Fader, Hardie & Lee (2005).
PLANTED = btyd.BGParams(r=0.243, alpha=4.414, a=0.793, b=2.426, time_unit_days=7.0)


def _closed_form(p: btyd.BGParams, t: float, x: np.ndarray, tx: np.ndarray, big_t: np.ndarray):
    """Equations (10) and P(alive) of the paper, written out without the Euler transformation."""
    r, alpha, a, b = p.r, p.alpha, p.a, p.b
    den = 1 + (x > 0) * a / (b + x - 1) * ((alpha + big_t) / (alpha + tx)) ** (r + x)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
    num = (a + b + x - 1) / (a - 1) * (1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp)
    return 1 / den, num / den


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_bundles(tmp_path_factory.mktemp("b"))


def _rows() -> pd.DataFrame:
    frame = feature_frame(4, seed=1)
    frame["bg_frequency"] = [0.0, 2.0, 7.0, np.nan]  # the last one never bought
    frame["bg_recency_days"] = [0.0, 35.0, 200.0, np.nan]
    frame["bg_age_days"] = [70.0, 140.0, 210.0, np.nan]
    frame["monetary_total"] = [12.5, 80.25, 1234.5678, 0.0]
    frame["avg_order_value"] = [12.5, 26.75, 176.0, np.nan]
    return frame


def test_per_customer_bgnbd_agrees_with_the_formulas_on_a_planted_case(bundles) -> None:
    cltv = open_bundle(bundles["cltv"])
    cltv.meta.bgnbd = {**PLANTED.to_json(), "degenerate": False}
    cltv.meta.mean_order_value = 20.0
    frame = _rows()
    ans = cltv.cltv_answers(cltv.encoder.encode_frame(frame), summary_columns(frame), np.full(4, 0.3))
    x = np.array([0.0, 2.0, 7.0])
    tx, big_t = np.array([0.0, 35.0, 200.0]) / 7, np.array([70.0, 140.0, 210.0]) / 7
    alive, orders = _closed_form(PLANTED, 90 / 7, x, tx, big_t)
    np.testing.assert_allclose(ans["p_alive"][:3], alive, rtol=1e-9)
    np.testing.assert_allclose(ans["expected_orders"][:3], orders, rtol=1e-8)
    # No repeat purchase: alive for sure (BG/NBD drops out only after a purchase); a long silence lowers P(alive).
    assert ans["p_alive"][0] == 1.0 and 0.0 < ans["p_alive"][1] < ans["p_alive"][2] < 1.0
    assert list(ans["activity_method"]) == ["bgnbd", "bgnbd", "bgnbd", "fallback"]
    # Never bought: BG/NBD has nothing to say; p_alive from the churn model, orders from spend / average order.
    assert ans["p_alive"][3] == pytest.approx(0.7)
    assert ans["expected_orders"][3] == pytest.approx(ans["predicted_spend"][3] / 20.0)
    np.testing.assert_array_equal(ans["historic_value"], frame.monetary_total.to_numpy())


def test_degenerate_fit_falls_back_and_says_so(bundles) -> None:
    cltv = open_bundle(bundles["cltv"])
    cltv.meta.bgnbd = {**PLANTED.to_json(), "degenerate": True}
    cltv.meta.mean_order_value = 20.0
    frame = _rows()
    churn = np.array([0.1, 0.2, 0.3, 0.4])
    ans = cltv.cltv_answers(cltv.encoder.encode_frame(frame), summary_columns(frame), churn)
    assert set(ans["activity_method"]) == {"fallback"}
    np.testing.assert_allclose(ans["p_alive"], 1 - churn)
    aov = np.array([12.5, 26.75, 176.0, 20.0])  # the last has no purchase: the training population's average
    np.testing.assert_allclose(ans["expected_orders"], ans["predicted_spend"] / aov)
    # Batch scoring (predict) gives the same columns through the same code.
    out = score_frame(cltv, frame, churn)
    np.testing.assert_allclose(out.p_alive, ans["p_alive"])
    assert list(out.cltv_activity_method) == ["fallback"] * 4


def test_cancelled_customer_is_churned_with_one_reason(bundles) -> None:
    churn = open_bundle(bundles["churn"])
    frame = _rows()
    frame.loc[2, CANCELLED_FEATURE] = 1.0
    x = churn.encoder.encode_frame(frame)
    p = churn.churn_probability(x)
    assert p[2] == 1.0 and (p[[0, 1, 3]] < 1.0).all()
    assert [risk_band(v, c) for v, c in zip(p, churn.cancelled(x), strict=True)][2] == "churned"
    assert risk_band(0.99) == "high" and risk_band(0.1) == "low"
    reasons = churn.churn_reasons(x)
    assert reasons[2] == [
        {
            "feature": CANCELLED_FEATURE,
            "description": "Cancelled before the as-of time (1 = already churned)",
            "value": 1.0,
            "contribution": None,
            "direction": "up",
        }
    ]


def test_reasons_both_ways_with_category_labels(bundles) -> None:
    churn = open_bundle(bundles["churn"])
    frame = feature_frame(60, seed=9)
    x = churn.encoder.encode_frame(frame)
    contribs = churn._predictor("main").contributions(x)[:, :-1]
    for i, reasons in enumerate(churn.reasons(x)):
        ups = [r for r in reasons if r["direction"] == "up"]
        downs = [r for r in reasons if r["direction"] == "down"]
        assert reasons == ups + downs and len(ups) <= 3 and len(downs) <= 3
        row = contribs[i]
        top_up = sorted((v for v in row if v > 0), reverse=True)[:3]
        top_down = sorted(v for v in row if v < 0)[:3]
        assert [r["contribution"] for r in ups] == pytest.approx(top_up)
        assert [r["contribution"] for r in downs] == pytest.approx(top_down)
    # A category is shown by its label, not its code, whichever reason it appears in.
    j = churn.encoder.columns.index("attr_region")
    for i in range(5):
        assert x[i, j] in (0.0, 1.0, 2.0)
        assert churn._reason(j, float(x[i, j]), 0.5, "up")["value"] == frame.loc[i, "attr_region"]
    assert churn.encoder.label("attr_region", float("nan")) is None


def test_an_answer_computes_the_churn_boosters_inputs_once(bundles, monkeypatch) -> None:
    """Probability and reasons read the same BG/NBD inputs: one computation per scored set of rows."""
    from features.kinds import CHURN, ScoreContext

    churn = open_bundle(bundles["churn"])
    rows = [{"recency_days": 10.0, "frequency_total": 3.0}, {"recency_days": 200.0}]
    calls = []
    real = type(churn).inputs
    monkeypatch.setattr(type(churn), "inputs", lambda self, x: calls.append(1) or real(self, x))
    ctx = ScoreContext(rows, {"churn": churn}, lambda name: churn.encoder.encode_rows(rows))
    parts = CHURN.score(churn, ctx)
    assert len(parts) == 2 and len(calls) == 1
    x = churn.encoder.encode_rows(rows)
    assert [p["probability"] for p in parts] == churn.churn_probability(x).tolist()
