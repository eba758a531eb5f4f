"""Hot reload against a real server of its own (it changes the served versions, so it shares no server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import API_KEY, Server, build_bundles, launch, make_home, stop, write_manifest


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("reload-home")
    customers = make_home(home)
    proc, url = launch(home, home / "server.log")
    try:
        yield Server(url=url, home=home, customers=customers, log=home / "server.log")
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def own_client(own_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=own_server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as c:
        yield c


def _versions(client: httpx.Client) -> dict[str, int]:
    r = client.post("/v1/personalize", json={"customer_id": "c1"})
    assert r.status_code == 200, r.text
    return r.json()["model_versions"]


def test_new_manifest_is_picked_up_without_restart(own_client: httpx.Client, own_server: Server) -> None:
    client, server = own_client, own_server
    before = client.post("/v1/churn", json={"customer_id": "c1"}).json()["churn"]["probability"]
    assert _versions(client) == {"churn": 1, "cltv": 1, "next_best_offer": 1}

    # A broken manifest is refused; the service keeps answering with what it has.
    (server.home / "serving.json").write_text("{not json")
    # Waiting for the service to report it, not a fixed sleep: a loaded machine may check later than usual.
    deadline = time.monotonic() + 10
    while "cxpredict_model_reload_errors_total 1" not in client.get("/metrics").text:
        assert time.monotonic() < deadline, "the broken manifest was not noticed within 10 s"
        time.sleep(0.2)
    assert _versions(client) == {"churn": 1, "cltv": 1, "next_best_offer": 1}

    paths = build_bundles(server.home / "models" / "v2", seed=1)
    write_manifest(server.home, paths, {"churn": 2, "cltv": 2, "next_best_offer": 2})
    deadline = time.monotonic() + 10
    while _versions(client) != {"churn": 2, "cltv": 2, "next_best_offer": 2}:
        assert time.monotonic() < deadline, "new models not served within 10 s"
        time.sleep(0.2)
    after = client.post("/v1/churn", json={"customer_id": "c1"}).json()["churn"]["probability"]
    assert after != before
    metrics = client.get("/metrics").text
    assert 'cxpredict_model_version{model="churn"} 2' in metrics
    assert "cxpredict_model_reload_errors_total 1" in metrics
