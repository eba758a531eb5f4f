"""CONTRACT §2 "known customers": every one is answered by `predict`, the online store and the runtime the API uses.

One small synthetic dataset, with planted customers the old "bought in the last 365 days" population missed: a
lapsed buyer, one whose only lines have amount 0, one who signed up and never bought, and one cancelled before T.
Models are trained on it (real MLflow, real registry), materialized, and answered through the serving runtime.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from features.materialize import materialize
from features.settings import Settings
from features.synthetic import SyntheticConfig, generate, write_dataset
from serving.manifest import resolve_champions
from serving.runtime import Runtime, UnknownCustomer
from serving.schemas import MAX_BATCH
from tests.serving.conftest import API_KEY, launch, stop
from tests.training.conftest import SMALL_EFFECTS
from training.config import TrainConfig, XGBParams
from training.predict import predict
from training.train import train

AS_OF = datetime(2025, 1, 1)
PLANTED = {"lapsed": "zz_lapsed", "zero": "zz_zero", "signed": "zz_signed", "cancelled": "zz_cancelled"}


def _planted(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    tx = tables["transactions"]
    template = tx.iloc[[0, 0, 0, 0]].copy()
    template["customer_id"] = [PLANTED["lapsed"], PLANTED["lapsed"], PLANTED["zero"], PLANTED["cancelled"]]
    # Lapsed: two purchases a year and a half before T; zero: one free line; cancelled: one purchase.
    template["ts"] = pd.to_datetime(["2023-03-01 10:00", "2023-06-01 10:00", "2024-10-01 10:00", "2024-05-01 10:00"])
    template["amount"] = [40.0, 25.5, 0.0, 19.0]
    if "order_id" in template:
        template["order_id"] = ["zz1", "zz2", "zz3", "zz4"]
    customers = tables["customers"]
    extra = customers.iloc[[0, 0]].copy()
    extra["customer_id"] = [PLANTED["signed"], PLANTED["cancelled"]]
    extra["signup_ts"] = pd.to_datetime(["2024-11-01", "2024-04-01"])
    extra["churn_ts"] = pd.to_datetime([None, "2024-09-01"])
    return {
        **tables,
        "transactions": pd.concat([tx, template], ignore_index=True),
        "customers": pd.concat([customers, extra], ignore_index=True),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("known")
    tables = generate(SyntheticConfig(n_customers=700, seed=5))
    train_dir, data_dir = root / "train", root / "data"
    # Trained on the synthetic data as generated (no churn_ts: purchase-based churn); answered on the same data
    # plus the planted customers, one of them cancelled.
    write_dataset(tables, train_dir)
    write_dataset(_planted(tables), data_dir)
    settings = Settings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", home=root / "home", api_keys=("k",))
    config = TrainConfig(
        xgb=XGBParams(n_estimators=40, max_depth=3),
        max_snapshots=2,
        effect_learners=SMALL_EFFECTS,
        year_ago_backtest=False,
    )
    result = train(train_dir, AS_OF, config, settings)
    assert all(r.version for r in result.models.values())
    runs = {r.info.run_name: r for r in mlflow.search_runs(experiment_names=["cxpredict"], output_format="list")}
    n, _ = materialize(data_dir, AS_OF, settings)
    resolve_champions(settings)
    (settings.home / "policy.yaml").write_text("holdout_share: 0\n")
    frame, _ = predict(data_dir, AS_OF, settings)
    runtime = Runtime(settings)
    yield {
        "runs": runs,
        "settings": settings,
        "data": data_dir,
        "predict": frame.set_index("customer_id"),
        "runtime": runtime,
        "n": n,
    }
    runtime.decisions.close()


def _known_ids(data_dir: Path) -> set[str]:
    tx = pd.read_parquet(data_dir / "transactions.parquet")
    customers = pd.read_parquet(data_dir / "customers.parquet")
    signed = customers[customers.signup_ts.isna() | (customers.signup_ts < AS_OF)]
    return set(tx[tx.ts < AS_OF].customer_id.astype(str)) | set(signed.customer_id.astype(str))


def test_every_known_customer_is_answered_and_only_they(world) -> None:
    known = _known_ids(world["data"])
    assert set(PLANTED.values()) <= known
    assert set(world["predict"].index) == known and world["n"] == len(known)
    ids = sorted(known)
    answers = world["runtime"].personalize_many(ids)
    assert [a["customer_id"] for a in answers] == ids and not any("error" in a for a in answers)
    for cid in PLANTED.values():
        one = world["runtime"].personalize(cid)
        assert one["churn"]["available"] and one["cltv"]["available"]
    with pytest.raises(UnknownCustomer):
        world["runtime"].personalize("not-in-the-data")
    [missing] = world["runtime"].personalize_many(["not-in-the-data"])
    assert missing["error"] == "unknown_customer"


def test_train_run_says_its_population_window_and_bgnbd(world) -> None:
    runs = world["runs"]
    parent = next(r for name, r in runs.items() if name.startswith("train "))
    assert "lapsed" in parent.data.tags["churn_population"]
    assert parent.data.params["train.response_window_days"] == "14"
    assert runs["churn"].data.params["train_population"] == "known_not_cancelled"
    assert runs["cltv"].data.params["bgnbd_degenerate"] in ("True", "False")
    assert runs["churn"].data.params["response_window_days"] == "14"


def test_lapsed_customer_gets_a_real_probability_and_ranked_offers(world) -> None:
    answer = world["runtime"].personalize(PLANTED["lapsed"])
    p = answer["churn"]["probability"]
    assert 0.5 < p < 1.0 and answer["churn"]["risk_band"] in ("medium", "high")
    assert answer["next_best_offer"]["ranking"], "a win-back offer is still ranked"
    assert world["predict"].loc[PLANTED["lapsed"], "churn_probability"] == pytest.approx(p, rel=1e-6)
    # Not a constant: lapsed customers' probabilities differ (the model was trained on lapsed customers too).
    rows = world["predict"]
    lapsed = rows[rows.churn_probability > 0.5].churn_probability
    assert lapsed.nunique() > 3


def test_zero_amount_and_never_bought_customers(world) -> None:
    for key in ("zero", "signed"):
        answer = world["runtime"].personalize(PLANTED[key])
        assert 0.0 < answer["churn"]["probability"] < 1.0
        cltv = answer["cltv"]
        assert cltv["historic_value"] == 0.0
        # No purchase yet: BG/NBD has nothing to say, so the answer falls back and says so.
        assert cltv["activity_method"] == "fallback"
        assert cltv["p_alive"] == pytest.approx(1.0 - answer["churn"]["probability"])
        assert cltv["expected_orders"] is not None and cltv["expected_orders"] >= 0.0


def test_cancelled_customer_is_answered_as_churned(world) -> None:
    answer = world["runtime"].personalize(PLANTED["cancelled"])
    assert answer["churn"]["probability"] == 1.0 and answer["churn"]["risk_band"] == "churned"
    assert [r["feature"] for r in answer["churn"]["reasons"]] == ["cancelled_before_asof"]
    assert answer["cltv"]["predicted_spend"] == 0.0 and answer["cltv"]["historic_value"] == 19.0
    row = world["predict"].loc[PLANTED["cancelled"]]
    assert row.churn_probability == 1.0 and row.churn_risk_band == "churned"
    others = world["predict"].drop(index=PLANTED["cancelled"])
    assert (others.churn_risk_band != "churned").all() and (others.churn_probability < 1.0).all()


def test_historic_value_is_net_spend_before_t(world) -> None:
    tx = pd.read_parquet(world["data"] / "transactions.parquet")
    net = tx[tx.ts < AS_OF].groupby("customer_id").amount.sum()
    rows = world["predict"]
    got = rows.historic_value.reindex(net.index)
    np.testing.assert_allclose(got.to_numpy(), net.to_numpy(), atol=1e-4)
    assert rows.loc[PLANTED["lapsed"], "historic_value"] == 65.5
    answer = world["runtime"].personalize(PLANTED["lapsed"])
    assert answer["cltv"]["historic_value"] == 65.5


def test_cltv_columns_and_reasons_both_ways(world) -> None:
    rows = world["predict"]
    for col in ("historic_value", "p_alive", "expected_orders", "predicted_spend", "cltv"):
        assert col in rows.columns
    bought = rows[rows.historic_value > 0].drop(index=PLANTED["cancelled"])
    assert bought.p_alive.between(0, 1).all() and (bought.expected_orders >= 0).all()
    answers = world["runtime"].personalize_many(list(rows.index[:40]))
    directions = set()
    for a in answers:
        for part, key in (("churn", "reasons"), ("cltv", "drivers")):
            reasons = a[part][key]
            assert reasons, f"{part} of {a['customer_id']} has no {key}"
            for r in reasons:
                assert (r["contribution"] > 0) == (r["direction"] == "up") and r["description"]
                directions.add(r["direction"])
            ups = [r for r in reasons if r["direction"] == "up"]
            assert ups == reasons[: len(ups)], "pushing up first, then holding down"
    assert directions == {"up", "down"}


@pytest.mark.slow
def test_every_known_customer_gets_200_over_http(world) -> None:
    """The real service on the same home: /v1/personalize and the batch endpoint answer every known id."""
    home = world["settings"].home
    proc, url = launch(home, home / "server.log")
    try:
        ids = sorted(_known_ids(world["data"]))
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
            for cid in [*PLANTED.values(), *ids[:20]]:
                res = client.post("/v1/personalize", json={"customer_id": cid})
                assert res.status_code == 200, (cid, res.text)
            for start in range(0, len(ids), MAX_BATCH):
                chunk = ids[start : start + MAX_BATCH]
                res = client.post("/v1/personalize/batch", json={"customer_ids": chunk})
                assert res.status_code == 200
                results = res.json()["results"]
                assert [r["customer_id"] for r in results] == chunk and not any("error" in r for r in results)
            churned = client.post("/v1/churn", json={"customer_id": PLANTED["cancelled"]}).json()["churn"]
            assert churned["risk_band"] == "churned" and churned["probability"] == 1.0
            missing = client.post("/v1/personalize", json={"customer_id": "not-in-the-data"})
            assert missing.status_code == 404 and missing.json()["error"] == "unknown_customer"
    finally:
        stop(proc)
