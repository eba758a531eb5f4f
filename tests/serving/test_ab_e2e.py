"""End to end through the real registry and the real ``cxpredict serve``: no training/serving skew, an A/B test
with a simulated population whose outcomes depend on the served offer, the report, and a promotion under load.

The simulated world: a customer converts with probability 0.40 when shown the offer version 1 ranks first for
them, 0.12 when shown another offer, and 0.06 when shown none (the holdout). The challenger (version 2) is trained
on a catalog where version 1's most frequent choice is not available, so it must serve something else to many
customers; the true difference follows from the offers actually served, and the report must find it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

from cxpredict.cli import app
from features.materialize import materialize
from features.settings import load_settings
from features.synthetic import SyntheticConfig, generate, write_dataset
from serving import ab
from serving.ab_stats import analyze
from serving.cli_serve import default_workers
from serving.experiments import HOLDOUT, assign
from tests.serving.conftest import ROOT, free_port, stop
from tests.training.conftest import SMALL_EFFECTS
from training.config import TrainConfig, XGBParams
from training.predict import predict
from training.train import train

KEY = "e2e-key"
P_BEST, P_OTHER, P_NONE = 0.40, 0.12, 0.06


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("e2e")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CXPREDICT_HOME": str(root / "home"),
        "CXPREDICT_API_KEYS": KEY,
        "CXPREDICT_RELOAD_SECONDS": "1",
    }
    settings = load_settings(env)
    data = root / "data"
    write_dataset(generate(SyntheticConfig(n_customers=1600, seed=21)), data)
    train(
        data,
        None,
        TrainConfig(
            xgb=XGBParams(n_estimators=80, max_depth=3),
            max_snapshots=3,
            seed=1,
            effect_learners=SMALL_EFFECTS,
            year_ago_backtest=False,
        ),
        settings,
    )
    # Version 2 of next_best_offer: the same data, but version 1's favourite offer is never eligible.
    first = predict(data, None, settings)[0]
    favourite = first.next_best_offer.value_counts().index[0]
    data_v2 = root / "data_v2"
    shutil.copytree(data, data_v2)
    catalog = pd.read_parquet(data_v2 / "offer_catalog.parquet")
    catalog.loc[catalog.offer_id == favourite, "eligible_if"] = "tenure_days < 0"
    catalog.to_parquet(data_v2 / "offer_catalog.parquet", index=False)
    v2 = TrainConfig(
        xgb=XGBParams(n_estimators=40, max_depth=3),
        max_snapshots=2,
        models=("next_best_offer",),
        effect_learners=SMALL_EFFECTS,
    )
    train(data_v2, None, v2, settings)
    materialize(data, None, settings)
    port = free_port()
    log = root / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/cxpredict"), "serve", "--port", str(port)],
            cwd=root,
            env={**os.environ, **env, "BENTOML_HOME": str(root / "bentoml")},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=20) as client:
            yield {
                "root": root,
                "env": env,
                "settings": settings,
                "data": data,
                "client": client,
                "ids": first.customer_id.tolist(),  # every scored customer: no test depends on another's files
                "log": log,
                "proc": proc,
            }
    finally:
        stop(proc)


def cli(world: dict, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=world["env"])
    assert result.exit_code == 0, result.output
    return result.output


def champion_answers(world: dict, ids: list[str]) -> dict[str, dict]:
    out = {}
    for i in range(0, len(ids), 1000):
        r = world["client"].post("/v1/personalize/batch", json={"customer_ids": ids[i : i + 1000]})
        assert r.status_code == 200, r.text
        out.update({a["customer_id"]: a for a in r.json()["results"]})
    return out


def test_serving_equals_cxpredict_predict(world: dict) -> None:
    cli(world, "predict", "--data", str(world["data"]), "--out", str(world["root"] / "pred.parquet"))
    pred = pd.read_parquet(world["root"] / "pred.parquet").set_index("customer_id")
    served = champion_answers(world, list(pred.index))
    assert len(served) == len(pred) > 500
    for cid, row in pred.iterrows():
        a = served[cid]
        assert a["model_versions"] == {"churn": 1, "cltv": 1, "next_best_offer": 1}
        assert a["churn"]["probability"] == pytest.approx(row.churn_probability, rel=1e-6, abs=1e-9)
        assert a["cltv"]["predicted_spend"] == pytest.approx(row.predicted_spend, rel=1e-5, abs=1e-6)
        assert a["cltv"]["value"] == pytest.approx(row.cltv, rel=1e-5, abs=1e-6)
        nbo = a["next_best_offer"]
        # None where no offer is eligible or none pays (Parquet stores it as a missing string).
        assert (nbo.get("offer_id") if nbo["available"] else None) == (
            None if pd.isna(row.next_best_offer) else row.next_best_offer
        )
        if nbo["available"]:
            assert nbo["expected_value"] == pytest.approx(row.next_best_offer_value, rel=1e-5, abs=1e-6)


def test_ab_experiment_report_finds_the_better_variant(world: dict) -> None:
    client = world["client"]
    ids = world["ids"]
    best = {cid: a["next_best_offer"].get("offer_id") for cid, a in champion_answers(world, ids).items()}
    out = cli(
        world,
        "ab", "start", "nbo-test", "--model", "next_best_offer",
        "--variant", "champion=0.45", "--variant", "challenger=0.45", "--holdout", "0.1",
    )  # fmt: skip
    assert "challenger" in out and "next_best_offer v2" in out
    deadline = time.monotonic() + 20
    while client.post("/v1/personalize", json={"customer_id": ids[0]}).json()["experiment"] is None:
        assert time.monotonic() < deadline, "the service did not pick up the experiment"
        time.sleep(0.3)

    rng = np.random.default_rng(5)
    arms = [(HOLDOUT, 0.1), ("champion", 0.45), ("challenger", 0.45)]
    expected_rate: dict[str, list[float]] = {"champion": [], "challenger": [], HOLDOUT: []}
    http_feedback, file_feedback = [], []
    for n, cid in enumerate(ids):
        a = client.post("/v1/personalize", json={"customer_id": cid, "context": {"channel": "email"}}).json()
        arm = a["experiment"]["variant"]
        assert arm == assign("nbo-test", cid, arms)[0]
        expected_version = 2 if arm == "challenger" else 1
        assert a["model_versions"]["next_best_offer"] == expected_version
        nbo = a["next_best_offer"]
        shown = nbo["offer_id"] if nbo["available"] else None
        if arm == HOLDOUT:
            assert shown is None and nbo["holdout"]
        elif arm == "champion":  # the champion's own choice, an offer or none where none pays
            assert shown == best[cid]
        p = P_NONE if shown is None else (P_BEST if shown == best[cid] else P_OTHER)
        expected_rate[arm].append(p)
        if rng.random() < p:
            fb = {"decision_id": a["decision_id"], "outcome": "converted", "value": 20.0}
            (http_feedback if n % 2 else file_feedback).append(fb)
    for fb in http_feedback:
        assert client.post("/v1/feedback", json=fb).status_code == 200
    assert client.post("/v1/feedback", json=http_feedback[0]).status_code == 200  # idempotent repeat
    unknown = client.post("/v1/feedback", json={**http_feedback[0], "decision_id": "f" * 32})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_decision"
    pd.DataFrame(file_feedback).to_csv(world["root"] / "fb.csv", index=False)
    assert f"{len(file_feedback)} feedback rows stored" in cli(world, "ab", "ingest", str(world["root"] / "fb.csv"))
    # Stickiness: a second visit lands in the same arm.
    again = client.post("/v1/personalize", json={"customer_id": ids[3]}).json()
    assert again["experiment"]["variant"] == assign("nbo-test", ids[3], arms)[0]

    html = world["root"] / "report.html"
    text = cli(world, "ab", "report", "nbo-test", "--html", str(html))
    assert "champion" in text and "challenger" in text and html.read_text().count("data:image/png;base64,") >= 2

    data = ab.report_data(world["settings"], "nbo-test")
    assert data.switched == 0 and len(data.units) == len(ids)
    result = analyze(data.units, dict(arms), control="champion")
    assert not result.srm.mismatch
    rate = {c.variant: c for c in result.comparisons if c.metric == "outcome_rate"}
    true_diff = np.mean(expected_rate["challenger"]) - np.mean(expected_rate["champion"])
    assert true_diff < -0.05, f"version 2 agrees with version 1 too often for a meaningful test ({true_diff:.3f})"
    chall = rate["challenger"]
    assert chall.ci_low <= true_diff <= chall.ci_high
    assert chall.difference < 0 and chall.p_value < 0.01 and chall.prob_better < 0.05
    assert rate[HOLDOUT].difference < 0

    assert "stopped" in cli(world, "ab", "stop", "nbo-test")
    listing = cli(world, "ab", "list")
    assert "nbo-test" in listing and "stopped" in listing


def test_promotion_under_load_drops_no_request(world: dict) -> None:
    client = world["client"]
    ids = world["ids"][:200]
    # (status, next_best_offer version, experiment) per request, per connection. Connections may be served by
    # different worker processes, and each worker reloads on its own.
    seen: list[list[tuple[int, int | None, object]]] = [[] for _ in range(4)]
    halt = threading.Event()

    def load(k: int) -> None:
        with httpx.Client(base_url=str(client.base_url), headers=dict(client.headers), timeout=20) as c:
            i = 0
            while not halt.is_set():
                r = c.post("/v1/personalize", json={"customer_id": ids[(k * 50 + i) % len(ids)]})
                i += 1
                body = r.json()
                version = body.get("model_versions", {}).get("next_best_offer")
                seen[k].append((r.status_code, version, body.get("experiment")))

    def every_connection(ok: Callable[[tuple[int, int | None, object]], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not all(s[-5:] and all(ok(x) for x in s[-5:]) for s in seen):
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        # The previous test stopped its experiment: wait until no worker routes it any more.
        every_connection(lambda x: x[2] is None, "the stopped experiment is still routed")
        start = [len(s) for s in seen]
        assert "version 2" in cli(world, "promote", "next_best_offer", "2", "--alias", "champion")
        every_connection(lambda x: x[1] == 2, "the promoted version was not picked up by every worker")
        time.sleep(1.0)
    finally:
        halt.set()
        for t in threads:
            t.join(timeout=30)
    statuses = [code for s in seen for code, _, _ in s]
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests, non-200: {set(statuses) - {200}}"
    for s, first in zip(seen, start, strict=True):
        versions = [v for _, v, _ in s[first:]]
        switch = versions.index(2)
        back = [i for i, v in enumerate(versions) if i > switch and v != 2]
        assert set(versions[:switch]) == {1} and not back, f"a request went back to v1: {switch=}, at {back[:10]}"


def test_zz_sigterm_to_cxpredict_serve_stops_the_whole_server(world: dict) -> None:
    """`kill PID` (SIGTERM to `cxpredict serve` alone, not its group) must not leave the BentoML server running."""
    proc = world["proc"]
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert tree, "cxpredict serve runs the BentoML server as a child"
    # Without --workers, one worker process per usable core (at most 4): two on the 2-core CI machine.
    workers = [p for p in tree if "_bentoml_impl.worker" in " ".join(p.cmdline())]
    assert len(workers) == default_workers()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, [p.cmdline() for p in alive]
    with pytest.raises(httpx.HTTPError):
        httpx.get(str(world["client"].base_url.join("/livez")), timeout=2)
