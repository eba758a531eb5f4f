"""The online store going away under a running server: `/v1` answers 503 with Retry-After, not a 500.

Uses its own ``redis-server`` on a free port (stopped in the middle of the test), so the shared Redis is never
touched; skipped when the binary is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from features.definitions import feature_set_version
from features.settings import load_settings
from features.stores.factory import write_online_store
from tests.serving.conftest import API_KEY, AS_OF, feature_frame, free_port, launch, make_home, stop


@pytest.fixture
def own_redis() -> Iterator[tuple[subprocess.Popen, str]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    client.close()
    try:
        yield proc, url
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_redis_gone_is_a_503_with_retry_after(
    tmp_path: Path, own_redis: tuple[subprocess.Popen, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, url = own_redis
    make_home(tmp_path)
    customers = feature_frame(5, seed=7)
    customers.insert(0, "customer_id", [f"c{i}" for i in range(5)])
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_ONLINE_STORE": url})
    write_online_store(settings, customers, AS_OF, feature_set_version())
    monkeypatch.setenv("CXPREDICT_ONLINE_STORE", url)
    server, base = launch(tmp_path, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
            assert client.post("/v1/personalize", json={"customer_id": "c1"}).status_code == 200
            proc.kill()
            proc.wait()
            r = client.post("/v1/personalize", json={"customer_id": "c1"})
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] and r.json()["error"] == "online_store_unavailable"
            batch = client.post("/v1/personalize/batch", json={"customer_ids": ["c1", "c2"]})
            assert batch.status_code == 503 and batch.json()["error"] == "online_store_unavailable"
            assert httpx.get(f"{base}/readyz", timeout=30).status_code == 503
    finally:
        stop(server)
