"""A real server while its backends go away and come back: 503 with Retry-After on /v1, 503 on /readyz, recovery.

The online store is a Redis server of the test's own (never the shared one on 6379); the decision log is the
embedded SQLite file, moved away and back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from features.definitions import feature_set_version
from features.settings import load_settings
from features.stores.factory import write_online_store
from tests.serving.conftest import API_KEY, AS_OF, build_bundles, feature_frame, launch, stop, write_manifest
from tests.serving.faults import OwnRedis, lock_held_elsewhere

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path, OwnRedis]]:
    home = tmp_path_factory.mktemp("faultshome")
    redis_server = OwnRedis(tmp_path_factory.mktemp("redis"))
    paths = build_bundles(home / "models")
    write_manifest(home, paths, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    frame = feature_frame(10, seed=7)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(10)])
    settings = load_settings({"CXPREDICT_HOME": str(home), "CXPREDICT_ONLINE_STORE": redis_server.url})
    write_online_store(settings, frame, AS_OF, feature_set_version())
    proc, url = launch(home, home / "server.log", extra_env={"CXPREDICT_ONLINE_STORE": redis_server.url})
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=15) as client:
            yield client, home, redis_server
    finally:
        stop(proc)
        redis_server.stop()


def unavailable(r: httpx.Response, error: str) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.json()["error"] == error and set(r.json()) == {"error", "detail"}
    assert int(r.headers["retry-after"]) >= 1


def eventually(check: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.3)


def test_redis_down_is_503_and_not_ready_then_recovers(service: tuple[httpx.Client, Path, OwnRedis]) -> None:
    client, home, redis_server = service
    server_log = home / "server.log"

    def logged(text: str) -> int:
        return server_log.read_text(errors="replace").count(text)

    assert client.post("/v1/personalize", json={"customer_id": "c1"}).status_code == 200
    before = (logged("not ready: online store"), logged("ready again (online store recovered)"))
    redis_server.stop()
    try:
        unavailable(client.post("/v1/personalize", json={"customer_id": "c1"}), "online_store_unavailable")
        unavailable(client.post("/v1/personalize/batch", json={"customer_ids": ["c1"]}), "online_store_unavailable")
        assert [client.get("/readyz").status_code for _ in range(10)] == [503] * 10
        assert client.get("/livez").status_code == 200  # alive, just not ready: no restart wanted
    finally:
        redis_server.start()
    eventually(lambda: client.get("/readyz").status_code == 200)
    assert [client.get("/readyz").status_code for _ in range(5)] == [200] * 5
    assert client.post("/v1/personalize", json={"customer_id": "c1"}).status_code == 200
    # Probes come every second per replica: the log says when readiness changed, not at every probe.
    assert (logged("not ready: online store"), logged("ready again (online store recovered)")) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_decision_log_gone_is_503_and_not_ready_then_recovers(service: tuple[httpx.Client, Path, OwnRedis]) -> None:
    client, home, _ = service
    decision_id = client.post("/v1/personalize", json={"customer_id": "c2"}).json()["decision_id"]
    log_file, away = home / "decisions.sqlite", home / "decisions.away"
    os.rename(log_file, away)
    try:
        unavailable(client.post("/v1/churn", json={"customer_id": "c2"}), "decision_log_unavailable")
        unavailable(client.post("/v1/personalize/batch", json={"customer_ids": ["c2"]}), "decision_log_unavailable")
        feedback = {"decision_id": decision_id, "outcome": "converted"}
        unavailable(client.post("/v1/feedback", json=feedback), "decision_log_unavailable")
        assert client.get("/readyz").status_code == 503
    finally:
        os.rename(away, log_file)
    eventually(lambda: client.get("/readyz").status_code == 200)
    assert client.post("/v1/churn", json={"customer_id": "c2"}).status_code == 200
    assert client.post("/v1/feedback", json={"decision_id": decision_id, "outcome": "converted"}).status_code == 200


def test_a_decision_log_lock_held_elsewhere_is_503_then_recovers(service: tuple[httpx.Client, Path, OwnRedis]) -> None:
    """Another process (a stuck `cxpredict` command) sits on the log's write lock: 503s, never a hung request."""
    client, home, _ = service
    decision_id = client.post("/v1/personalize", json={"customer_id": "c3"}).json()["decision_id"]
    with lock_held_elsewhere(home / "decisions.sqlite.lock"):
        unavailable(client.post("/v1/churn", json={"customer_id": "c3"}), "decision_log_unavailable")
        feedback = {"decision_id": decision_id, "outcome": "converted"}
        unavailable(client.post("/v1/feedback", json=feedback), "decision_log_unavailable")
        assert client.get("/readyz").status_code == 503
    eventually(lambda: client.get("/readyz").status_code == 200)
    assert client.post("/v1/churn", json={"customer_id": "c3"}).status_code == 200
    assert client.post("/v1/feedback", json={"decision_id": decision_id, "outcome": "converted"}).status_code == 200
