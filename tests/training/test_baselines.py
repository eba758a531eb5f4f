"""The baselines every churn and CLTV run is compared with: aligned with the holdout rows, and compared honestly."""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from training.baselines import (
    BTYDAtCut,
    churn_baselines,
    cltv_baselines,
    compare,
    compare_cltv,
    rfm_logit,
)
from training.metrics import churn_metrics, cltv_metrics

CUT = datetime(2024, 7, 1)


def _purchases(n_active: int, n_lapsed: int, seed: int) -> tuple[pd.DataFrame, set[str]]:
    """Weekly buyers for a year: the active ones until the cut-off, the lapsed ones stop 20 weeks before it."""
    rng = np.random.default_rng(seed)
    rows, lapsed = [], set()
    for i in range(n_active + n_lapsed):
        cid = f"c{i}"
        stop = CUT if i < n_active else CUT - timedelta(weeks=20)
        if i >= n_active:
            lapsed.add(cid)
        day = CUT - timedelta(days=365) + timedelta(days=int(rng.integers(0, 7)))
        while day < stop:
            rows.append((cid, day, float(rng.uniform(20, 40))))
            day += timedelta(days=int(rng.integers(5, 10)))
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"]), lapsed


def test_bgnbd_baselines_follow_each_holdout_customer_by_id() -> None:
    tx, lapsed = _purchases(60, 60, seed=1)
    btyd = BTYDAtCut.fit(tx, CUT)
    # The holdout lists customers in another order than the summary, plus one who never bought.
    ids = [*sorted(set(tx.customer_id), reverse=True), "never-bought"]
    hold = pd.DataFrame({"customer_id": ids, "monetary_90d": 0.0})
    churn = churn_baselines(
        pd.DataFrame(
            {c: [1.0, 2.0] for c in ("recency_days", "frequency_365d", "monetary_365d")} | {"churned": [0, 1]}
        ),
        hold.assign(recency_days=1.0, frequency_365d=1.0, monetary_365d=1.0),
        btyd,
        horizon_days=90,
        seed=0,
    )["bgnbd"]
    gone = np.array([cid in lapsed for cid in ids[:-1]])
    # Lapsed regular buyers are the ones BG/NBD expects to stay quiet: a misaligned join would score near 0.5.
    assert churn_metrics(gone.astype(int), churn[:-1])["roc_auc"] > 0.95
    spend = cltv_baselines(hold, btyd, horizon_days=90)["bgnbd_gg"]
    assert spend[:-1][~gone].mean() > 3 * spend[:-1][gone].mean()
    # Whoever has no purchase before the cut-off gets the mean of the customers who have one.
    assert churn[-1] == pytest.approx(churn[:-1].mean())
    assert spend[-1] == pytest.approx(spend[:-1].mean())


def test_bgnbd_needs_a_purchase_before_the_cut_off() -> None:
    tx, _ = _purchases(3, 0, seed=2)
    with pytest.raises(ValueError):
        BTYDAtCut.fit(tx, CUT - timedelta(days=400))
    # Without a BG/NBD only the baselines that need none are scored.
    hold = pd.DataFrame({"customer_id": ["a"], "monetary_90d": [10.0]})
    assert set(cltv_baselines(hold, None, 90)) == {"last_period"}


def test_rfm_logit_learns_from_the_training_rows_only() -> None:
    rng = np.random.default_rng(0)

    def rows(n: int) -> pd.DataFrame:
        recency = rng.uniform(0, 200, n)
        return pd.DataFrame(
            {
                "recency_days": recency,
                "frequency_365d": rng.poisson(5, n).astype(float),
                "monetary_365d": np.where(rng.random(n) < 0.2, np.nan, rng.uniform(0, 500, n)),
                "churned": (recency + rng.normal(0, 20, n) > 100).astype(int),
            }
        )

    train, hold = rows(2000), rows(1000)
    p = rfm_logit(train, hold, seed=0)
    assert p.shape == (1000,) and np.all((p > 0) & (p < 1))
    assert churn_metrics(hold.churned.to_numpy(), p)["roc_auc"] > 0.9
    # Fitted on labels that carry no signal, it has nothing to rank by.
    noise = train.assign(churned=rng.permutation(train.churned.to_numpy()))
    assert churn_metrics(hold.churned.to_numpy(), rfm_logit(noise, hold, seed=0))["roc_auc"] < 0.6


def test_last_period_spend_is_scaled_to_the_horizon_and_never_negative() -> None:
    hold = pd.DataFrame({"customer_id": ["a", "b", "c"], "monetary_90d": [90.0, -30.0, np.nan]})
    assert cltv_baselines(hold, None, 30)["last_period"].tolist() == [30.0, 0.0, 0.0]


def test_compare_says_where_the_model_is_ahead_and_behind() -> None:
    better = {"roc_auc": True, "brier": False, "total_spend_error": False}
    model = {"roc_auc": 0.80, "brier": 0.20, "total_spend_error": -0.05}
    base = {"roc_auc": 0.75, "brier": 0.18, "total_spend_error": 0.02}
    out = compare(model, {"rfm_logit": base}, better)
    assert out.metrics == {f"baseline_rfm_logit_{m}": v for m, v in base.items()}
    # A total spend error counts by its distance from 0: -5% is behind +2%.
    assert out.lines == [
        "rfm_logit on the holdout: roc_auc=0.75, brier=0.18, total_spend_error=0.02; "
        "the model is ahead on roc_auc, behind on brier, total_spend_error"
    ]
    assert list(out.table.index) == ["model", "rfm_logit"]
    assert out.table.loc["model", "roc_auc"] == 0.80


def test_compare_cltv_scores_every_baseline_on_the_same_rows() -> None:
    actual = np.array([0.0, 10.0, 100.0, 40.0])
    model = np.array([1.0, 12.0, 90.0, 35.0])
    perfect = actual.copy()
    out = compare_cltv(actual, cltv_metrics(actual, model), {"oracle": perfect})
    assert out.metrics["baseline_oracle_mae"] == 0.0
    assert "behind on mae" in out.verdict
    # The model orders the customers as the oracle does: level on the Gini, not behind it.
    behind = out.verdict.split("behind on ")[1].split(", level on")[0]
    assert "level on normalized_gini" in out.verdict and "normalized_gini" not in behind
