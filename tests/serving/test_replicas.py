"""Two ``cxpredict serve`` replicas as one service: real Redis, PostgreSQL decision log and MLflow on PostgreSQL.

Each replica has its own ``CXPREDICT_HOME`` (its manifest and downloaded bundles) and port; they share the online
store (a Redis db of their own), the decision log and the registry (two throwaway PostgreSQL databases) and the
experiments file (``CXPREDICT_EXPERIMENTS``). Skipped with a reason when PostgreSQL or Redis is unreachable.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import mlflow
import pytest
import redis
from typer.testing import CliRunner

from cxpredict.cli import app
from features.materialize import materialize
from features.settings import load_settings
from features.synthetic import SyntheticConfig, generate, write_dataset
from tests.conftest import redis_db, throwaway_database
from tests.serving.conftest import ROOT, free_port, stop
from tests.training.conftest import SMALL_EFFECTS
from training.config import TrainConfig, XGBParams
from training.train import train

KEY = "replica-key"
REDIS_DB = 12
#: How many customers the checks below ask about.
N_ASKED = 30


def start_replica(root: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen, str, Path]:
    """``cxpredict serve`` with its own home and port; returns once ``/readyz`` answers 200."""
    home, port, log = root / name, free_port(), root / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/cxpredict"), "serve", "--port", str(port), "--workers", "1"],
            cwd=root,
            env={**os.environ, **env, "CXPREDICT_HOME": str(home), "BENTOML_HOME": str(root / f"bentoml-{name}")},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{port}", log


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("replicas")
    with ExitStack() as stack:
        registry_url = stack.enter_context(throwaway_database("cxp_mlflow"))
        log_url = stack.enter_context(throwaway_database("cxp_log"))
        store_url = stack.enter_context(redis_db(REDIS_DB))
        env = {
            "MLFLOW_TRACKING_URI": registry_url,
            "CXPREDICT_ONLINE_STORE": store_url,
            "CXPREDICT_DECISION_LOG": log_url,
            "CXPREDICT_EXPERIMENTS": str(root / "shared" / "experiments.yaml"),
            "CXPREDICT_API_KEYS": KEY,
            "CXPREDICT_RELOAD_SECONDS": "1",
        }
        settings = load_settings({**env, "CXPREDICT_HOME": str(root / "trainer")})
        # Artifacts in a directory of this test (not ./mlruns of the working directory).
        client = mlflow.MlflowClient(tracking_uri=registry_url, registry_uri=registry_url)
        client.create_experiment("cxpredict", artifact_location=(root / "artifacts").as_uri())
        data = root / "data"
        write_dataset(generate(SyntheticConfig(n_customers=400, seed=3)), data)
        small = XGBParams(n_estimators=40, max_depth=3)
        train(
            data,
            None,
            TrainConfig(xgb=small, max_snapshots=2, seed=1, effect_learners=SMALL_EFFECTS, year_ago_backtest=False),
            settings,
        )
        # Version 2 of churn, not promoted yet: the experiment and the promotion below use it.
        train(
            data,
            None,
            TrainConfig(xgb=small, max_snapshots=2, seed=2, models=("churn",), year_ago_backtest=False),
            settings,
        )
        materialize(data, None, settings)
        stored = redis.Redis.from_url(store_url)
        known = sorted(key.decode().rsplit(":", 1)[1] for key in stored.scan_iter(match="cxp:g:*:row:*"))
        stored.close()
        assert len(known) > N_ASKED
        customers = known[:: len(known) // N_ASKED][:N_ASKED]
        procs = [start_replica(root, name, env) for name in ("one", "two")]
        for proc, _, _ in procs:
            stack.callback(stop, proc)
        for proc, url, log in procs:
            wait_ready(proc, url, log)
        clients = [
            stack.enter_context(httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30))
            for _, url, _ in procs
        ]
        yield {
            "env": {**env, "CXPREDICT_HOME": str(root / "trainer")},
            "clients": clients,
            "customers": customers,
        }


def cli(replicas: dict, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=replicas["env"])
    assert result.exit_code == 0, result.output
    return result.output


def personalize(client: httpx.Client, customer: str) -> dict:
    r = client.post("/v1/personalize", json={"customer_id": customer, "context": {"channel": "email"}})
    assert r.status_code == 200, r.text
    return r.json()


def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.5)


def test_the_same_customer_gets_the_same_answer_from_both(replicas: dict) -> None:
    one, two = replicas["clients"]
    for customer in replicas["customers"][:10]:
        a, b = personalize(one, customer), personalize(two, customer)
        assert a["decision_id"] != b["decision_id"]
        assert a["churn"] == b["churn"] and a["cltv"] == b["cltv"]
        assert a["next_best_offer"]["ranking"] == b["next_best_offer"]["ranking"]
        assert a["model_versions"] == b["model_versions"] == {"churn": 1, "cltv": 1, "next_best_offer": 1}


def test_feedback_for_the_other_replicas_decision(replicas: dict) -> None:
    one, two = replicas["clients"]
    decision = personalize(one, replicas["customers"][10])["decision_id"]
    first = two.post("/v1/feedback", json={"decision_id": decision, "outcome": "converted", "value": 7.5})
    assert first.status_code == 200, first.text
    assert first.json()["recorded"] and not first.json()["duplicate"]
    again = one.post("/v1/feedback", json={"decision_id": decision, "outcome": "converted", "value": 99.0})
    assert again.status_code == 200 and again.json()["duplicate"] and again.json()["stored_value"] == 7.5


def test_an_experiment_started_once_routes_on_both(replicas: dict) -> None:
    one, two = replicas["clients"]
    cli(replicas, "ab", "start", "shared-exp", "--model", "churn", "--variant", "1=0.5", "--variant", "2=0.5")
    until(
        lambda: all(personalize(c, replicas["customers"][0]).get("experiment") for c in (one, two)),
        "both replicas route the experiment",
    )
    arms = set()
    for customer in replicas["customers"]:
        a, b = personalize(one, customer), personalize(two, customer)
        assert a["experiment"] == b["experiment"] and a["experiment"]["name"] == "shared-exp"
        assert a["model_versions"] == b["model_versions"]
        assert a["model_versions"]["churn"] == int(a["experiment"]["variant"])
        arms.add(a["experiment"]["variant"])
    assert arms == {"1", "2"}
    cli(replicas, "ab", "stop", "shared-exp")
    until(
        lambda: not any(personalize(c, replicas["customers"][0]).get("experiment") for c in (one, two)),
        "both replicas stop routing the experiment",
    )


def test_a_promotion_is_seen_by_both(replicas: dict) -> None:
    one, two = replicas["clients"]
    assert {personalize(c, replicas["customers"][1])["model_versions"]["churn"] for c in (one, two)} == {1}
    cli(replicas, "promote", "churn", "2", "--alias", "champion")
    until(
        lambda: all(personalize(c, replicas["customers"][1])["model_versions"]["churn"] == 2 for c in (one, two)),
        "both replicas serve churn version 2",
    )
