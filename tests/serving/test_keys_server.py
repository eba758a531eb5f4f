"""Keys against a real server: default-deny, scopes, key names in the log, the rate limit, reload without restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.decision_log import SQLiteDecisionLog
from tests.serving.conftest import launch, make_home, stop
from tests.serving.logged import read_decision

pytestmark = pytest.mark.slow

KEYS = "scorer:score-key-aaaa:score,fb:fb-key-bbbb:feedback,limited:lim-key-cccc"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("keyshome")
    make_home(home)
    env = {"CXPREDICT_API_KEYS": KEYS, "CXPREDICT_RATE_LIMIT": "2", "CXPREDICT_RATE_BURST": "4"}
    proc, url = launch(home, home / "server.log", extra_env=env)
    try:
        yield url, home
    finally:
        stop(proc)


def call(url: str, path: str, key: str | None, body: dict | None = None, method: str = "POST") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, url + path, json=body, headers=headers, timeout=10)


def error_of(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    return str(body["error"])


def test_default_deny_everything_but_health_and_metrics(keyed: tuple[str, Path]) -> None:
    url, _ = keyed
    for path in ("/docs.json", "/", "/nope", "/v1/nope", "/docs", "/metrics/extra", "/livez/x"):
        r = call(url, path, None, method="GET")
        assert r.status_code == 401 and error_of(r) == "unauthorized", (path, r.status_code)
    for path in ("/livez", "/readyz", "/metrics"):
        assert call(url, path, None, method="GET").status_code == 200, path
    assert call(url, "/docs.json", "fb-key-bbbb", method="GET").status_code == 200


def test_scopes_and_key_names_in_the_log(keyed: tuple[str, Path]) -> None:
    url, home = keyed
    r = call(url, "/v1/personalize", "fb-key-bbbb", {"customer_id": "c1"})
    assert r.status_code == 403 and error_of(r) == "forbidden" and "fb" in r.json()["detail"]
    answer = call(url, "/v1/personalize", "score-key-aaaa", {"customer_id": "c1"})
    assert answer.status_code == 200, answer.text
    decision_id = answer.json()["decision_id"]
    feedback = {"decision_id": decision_id, "outcome": "converted", "value": 3.0}
    r = call(url, "/v1/feedback", "score-key-aaaa", feedback)
    assert r.status_code == 403 and error_of(r) == "forbidden"
    assert call(url, "/v1/feedback", "fb-key-bbbb", feedback).status_code == 200
    batch = call(url, "/v1/personalize/batch", "score-key-aaaa", {"customer_ids": ["c2"]})
    assert batch.status_code == 200
    log = SQLiteDecisionLog(home / "decisions.sqlite")
    try:
        assert read_decision(log, decision_id)["outputs"]["key_name"] == "scorer"
        assert read_decision(log, batch.json()["results"][0]["decision_id"])["outputs"]["key_name"] == "scorer"
    finally:
        log.close()
    stored = b"".join(p.read_bytes() for p in home.glob("decisions.sqlite*") if p.is_file())
    assert b"scorer" in stored and b"score-key-aaaa" not in stored


def test_rate_limit_answers_429_with_retry_after(keyed: tuple[str, Path]) -> None:
    url, _ = keyed
    statuses = []
    for _ in range(12):
        r = call(url, "/v1/churn", "lim-key-cccc", {"customer_id": "c3"})
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert error_of(r) == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert 200 in statuses and 429 in statuses, statuses
    time.sleep(1.2)
    assert call(url, "/v1/churn", "lim-key-cccc", {"customer_id": "c3"}).status_code == 200


def test_keys_file_is_picked_up_without_restart(keyed: tuple[str, Path]) -> None:
    url, home = keyed
    assert call(url, "/v1/churn", "late-key-dddd", {"customer_id": "c4"}).status_code == 401
    (home / "api_keys.txt").write_text("late:late-key-dddd:score\n")
    deadline = time.monotonic() + 10
    while call(url, "/v1/churn", "late-key-dddd", {"customer_id": "c4"}).status_code != 200:
        assert time.monotonic() < deadline, "the new key was not accepted within 10 s"
        time.sleep(0.3)
