"""Hot reload against the real server (runs last: it changes the served versions)."""

from __future__ import annotations

import time

import httpx

from tests.serving.conftest import Server, build_bundles, write_manifest


def _versions(client: httpx.Client) -> dict[str, int]:
    r = client.post("/v1/personalize", json={"customer_id": "c1"})
    assert r.status_code == 200, r.text
    return r.json()["model_versions"]


def test_new_manifest_is_picked_up_without_restart(client: httpx.Client, server: Server) -> None:
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
