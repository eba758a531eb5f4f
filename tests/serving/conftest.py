"""A real BentoML server on a free port, serving tiny bundles built here (no training pipeline, no MLflow)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
import xgboost as xgb

from features.definitions import CANCELLED_FEATURE, feature_names, feature_set_version
from features.kinds import new_bundle
from features.online_store import write_store
from features.scoring import Encoder, design_matrix

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key"
AS_OF = datetime(2024, 4, 1)
N_CUSTOMERS = 50
OFFERS = [
    {"offer_id": "discount10", "value": 30.0, "cost": 1.0, "eligible_if": None},
    {"offer_id": "loyalty", "value": 60.0, "cost": 2.0, "eligible_if": "tenure_days >= 100"},
]


def feature_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Random but plausible feature rows (some missing values) with one string attribute."""
    rng = np.random.default_rng(seed)
    names = feature_names()
    data = rng.gamma(2.0, 20.0, size=(n, len(names)))
    data[rng.random(data.shape) < 0.05] = np.nan
    frame = pd.DataFrame(data, columns=names)
    frame["tenure_days"] = rng.integers(0, 400, n).astype(float)
    frame[CANCELLED_FEATURE] = 0.0  # a flag: nobody here cancelled before T (tests that need one set it)
    frame["attr_region"] = rng.choice(["north", "south", "east"], n)
    return frame


def build_bundles(directory: Path, seed: int = 0) -> dict[str, Path]:
    """Fit three tiny boosters and save them as bundles under ``directory/<name>``."""
    rng = np.random.default_rng(seed)
    frame = feature_frame(300, seed)
    encoder = Encoder.fit(frame)
    x = encoder.encode_frame(frame)
    recency = np.nan_to_num(frame["recency_days"].to_numpy(), nan=40.0)
    params = {"max_depth": 3, "eta": 0.3, "nthread": 1, "seed": seed}
    churn_y = (recency + rng.normal(0, 20, len(frame)) > 40).astype(float)
    churn = xgb.train({**params, "objective": "binary:logistic"}, xgb.DMatrix(x, label=churn_y), 15)
    spend_y = np.maximum(rng.gamma(1.5, 30.0, len(frame)) - recency * 0.2, 0.0)
    cltv = xgb.train({**params, "objective": "reg:tweedie"}, xgb.DMatrix(x, label=spend_y), 15)
    offer_index = rng.integers(-1, len(OFFERS), len(frame))
    # Strong enough that even the seed-0 booster splits on the offers (at 0.35/0.2 it never did, so every uplift
    # was 0 and no offer paid for its cost): most customers get an offer, some (recency >= 60) none.
    lift = np.array([0.0, 0.6, 0.4])[offer_index + 1] * (recency < 60)
    accepted = (rng.random(len(frame)) < 0.1 + lift).astype(float)
    nbo = xgb.train(
        {**params, "objective": "binary:logistic"},
        xgb.DMatrix(design_matrix(x, len(OFFERS), offer_index), label=accepted),
        15,
    )
    metas = {
        "churn": {"calibration": {"x": [0.0, 0.5, 1.0], "y": [0.0, 0.45, 1.0]}, "horizon_days": 90},
        "cltv": {"horizon_days": 90, "cltv_horizon_days": 365, "cltv_method": "model", "cltv_scale": 3.5},
        "next_best_offer": {"offers": OFFERS, "has_control": True, "method": "uplift", "horizon_days": 90},
    }
    boosters = {"churn": churn, "cltv": cltv, "next_best_offer": nbo}
    return {
        name: new_bundle(kind=name, meta=meta, encoder=encoder, boosters={"main": boosters[name]}).save(
            directory / name
        )
        for name, meta in metas.items()
    }


def write_manifest(home: Path, paths: dict[str, Path], versions: dict[str, int]) -> None:
    """Write ``serving.json`` atomically, like :mod:`serving.manifest` does."""
    manifest = {name: {"version": versions[name], "path": str(path)} for name, path in paths.items()}
    tmp = home / ".serving.json.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, home / "serving.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """The running service and what it serves."""

    url: str
    home: Path
    customers: pd.DataFrame
    log: Path


def launch(
    home: Path, log: Path, workers: int = 1, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start ``bentoml serve`` on ``home`` (own process group) and wait until it is ready."""
    port = free_port()
    env = {
        **os.environ,
        "CXPREDICT_HOME": str(home),
        "CXPREDICT_API_KEYS": API_KEY,
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(home / "bentoml"),
        # As `cxpredict serve --workers N` sets it.
        "BENTOML_CONFIG_OPTIONS": f"services.cxpredict.workers={workers}",
        **(extra_env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/bentoml"), "serve", "serving.service:CxPredict", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"server not ready after 60 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (BentoML's workers run in their own session, outside its group)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`launch` (SIGTERM, then SIGKILL), workers included."""
    tree = process_tree(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=10)
    for p in alive:
        p.kill()


def make_home(home: Path, n_customers: int = N_CUSTOMERS) -> pd.DataFrame:
    """Bundles v1, manifest and online store under ``home``; returns the stored customers."""
    paths = build_bundles(home / "models" / "v1")
    write_manifest(home, paths, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    customers = feature_frame(n_customers, seed=7)
    customers.insert(0, "customer_id", [f"c{i}" for i in range(n_customers)])
    write_store(home / "online", customers, AS_OF, feature_set_version())
    return customers


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("cxhome")
    customers = make_home(home)
    log = home / "server.log"
    proc, url = launch(home, log)
    try:
        yield Server(url=url, home=home, customers=customers, log=log)
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def anon(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c
