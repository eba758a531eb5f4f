"""``cxpredict roi`` recovers a planted incremental effect on a simulated population with a holdout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.policy import in_holdout
from features.settings import Settings
from serving.decision_log import FeedbackRow, SQLiteDecisionLog, new_decision_id
from serving.roi import analyze, roi, units
from tests.serving.logged import record

EFFECT = 12.0  # planted incremental spend per treated customer
RETAIN = 0.08  # planted incremental retention


def _simulate(home: Path, n: int = 6000, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    log = SQLiteDecisionLog(home / "decisions.sqlite")
    decisions, feedback = [], []
    counts = {"treated": 0, "holdout": 0}
    for i in range(n):
        cid = f"c{i}"
        held = in_holdout(cid, 0.2)
        offer = ["discount_10", "free_shipping"][i % 2]
        band = ["high", "medium", "low"][i % 3]
        pre = float(rng.gamma(2.0, 50.0))
        spend = 0.6 * pre + rng.normal(0, 25) + (0 if held else EFFECT)
        retained = rng.random() < 0.6 + (0 if held else RETAIN)
        nbo = (
            {"offer_id": None, "reason": "holdout", "ranking": [{"offer_id": offer, "expected_value": 3.0}]}
            if held
            else {"offer_id": offer, "expected_value": 3.0, "ranking": [{"offer_id": offer, "expected_value": 3.0}]}
        )
        d = {
            "decision_id": new_decision_id(),
            "customer_id": cid,
            "ts": 1.7e9 + i * 60,
            "model_versions": {},
            "context": {},
            "churn": {"probability": 0.5, "risk_band": band},
            "next_best_offer": nbo,
            "offer_id": "none" if held else offer,
            "pre_value": pre,
        }
        decisions.append(d)
        feedback += [FeedbackRow(d["decision_id"], "spend", spend), FeedbackRow(d["decision_id"], "retained", retained)]
        counts["holdout" if held else "treated"] += 1
    # A customer without a paying offer in the holdout is not comparable and must be left out.
    decisions.append(
        {
            **decisions[0],
            "decision_id": new_decision_id(),
            "customer_id": "x",
            "offer_id": "none",
            "next_best_offer": {
                "offer_id": None,
                "reason": "holdout",
                "ranking": [{"offer_id": "a", "expected_value": -1}],
            },
        }
    )
    feedback.append(FeedbackRow(decisions[-1]["decision_id"], "spend", 1e6))
    record(log, *decisions)
    log.ingest_feedback(feedback)
    log.close()
    return counts


@pytest.mark.slow  # an MLflow run
def test_roi_recovers_a_planted_effect(tmp_path: Path) -> None:
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", home=tmp_path / "home")
    (tmp_path / "home").mkdir()
    counts = _simulate(settings.home)
    result, text = roi(settings, html_path=tmp_path / "roi.html")
    overall = result.overall
    assert overall is not None
    assert (overall.treated, overall.holdout) == (counts["treated"], counts["holdout"])
    per = overall.revenue_per_customer
    assert per.low < EFFECT < per.high and per.low > 0
    assert overall.cuped  # pre-period spend explains much of the spend: CUPED narrows the interval
    retained = overall.retained.scaled(1 / overall.treated)
    assert retained.low < RETAIN < retained.high
    assert {s.name for s in result.offers} == {"discount_10", "free_shipping"}
    assert {s.name for s in result.bands} == {"high", "medium", "low"}
    for seg in result.offers:  # each offer compares with the holdout customers that would have got it
        est = seg.revenue_per_customer  # several 95% intervals: allow about 4 standard errors each
        assert abs(est.value - EFFECT) < est.high - est.low
    assert overall.cost.value == 0.0 and "no cost known" in " ".join(result.notes)
    page = (tmp_path / "roi.html").read_text()
    assert "data:image/png;base64," in page and "Per churn-risk band" in page
    assert "overall" in text and "CUPED" in text


def test_cuped_is_narrower_but_centred_alike(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    _simulate(tmp_path / "home", n=3000, seed=1)
    log = SQLiteDecisionLog(tmp_path / "home" / "decisions.sqlite")
    frame, _ = units(log.decisions_since(), {"discount_10": 2.0, "free_shipping": 1.0})
    log.close()
    result = analyze(frame)
    assert result.overall is not None and result.overall.cost.value > 0
    no_pre = analyze(frame.assign(pre_value=np.nan))
    assert no_pre.overall is not None and not no_pre.overall.cuped
    a, b = result.overall.revenue_per_customer, no_pre.overall.revenue_per_customer
    assert a.high - a.low < 0.8 * (b.high - b.low)
    assert a.value == pytest.approx(b.value, abs=b.high - b.low)
    roi_est = result.overall.roi
    assert roi_est.low < roi_est.value < roi_est.high
