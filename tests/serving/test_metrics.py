"""The service's own Prometheus series: publishing runtime totals, and sums over worker processes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from serving.metrics import ServiceMetrics
from tests.serving.conftest import API_KEY, N_CUSTOMERS, launch, make_home, process_tree, stop


def sample(metric: Any, **labels: str) -> float:
    """The value of one series of an (unregistered) prometheus_client metric."""
    for family in metric.collect():
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            if all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(labels)


class FakeRuntime:
    """What :meth:`ServiceMetrics.publish` reads from a runtime."""

    def __init__(self) -> None:
        self.counts = {
            "reloads": 0,
            "reload_errors": 0,
            "experiments_errors": 0,
            "shadow_scored": 0,
            "shadow_skipped": 0,
        }
        self.models = SimpleNamespace(versions={"churn": 3, "cltv": 2}, experiments=[object()])

    def totals(self) -> dict[str, int]:
        return dict(self.counts)

    def store_customers(self) -> int:
        return 42


def test_publish_turns_growth_of_totals_into_counter_increments() -> None:
    metrics = ServiceMetrics(["personalize", "churn"])
    runtime = FakeRuntime()
    assert sample(metrics.requests, endpoint="churn") == 0  # every endpoint's series exists from the start
    metrics.publish(runtime)  # type: ignore[arg-type]
    runtime.counts.update(reloads=2, shadow_scored=10)
    metrics.publish(runtime)  # type: ignore[arg-type]
    metrics.publish(runtime)  # publishing again without growth adds nothing
    runtime.counts.update(shadow_scored=15, shadow_skipped=1)
    metrics.publish(runtime)  # type: ignore[arg-type]
    assert sample(metrics._totals["reloads"]) == 2
    assert sample(metrics._totals["shadow_scored"]) == 15
    assert sample(metrics._totals["shadow_skipped"]) == 1
    assert sample(metrics._totals["reload_errors"]) == 0
    runtime.counts.update(experiments_errors=1)
    metrics.publish(runtime)  # type: ignore[arg-type]
    assert sample(metrics._totals["experiments_errors"]) == 1
    assert sample(metrics.model_version, model="churn") == 3
    assert sample(metrics.model_version, model="next_best_offer") == 0  # absent model
    assert sample(metrics.experiments) == 1 and sample(metrics.store_customers) == 42
    metrics.batch("personalize", 5)
    metrics.batch("personalize", 1)
    assert sample(metrics.requests, endpoint="personalize") == 6
    assert sample(metrics.calls, endpoint="personalize") == 2


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    home = tmp_path_factory.mktemp("cxhome2w")
    make_home(home)
    proc, url = launch(home, home / "server.log", workers=2)
    try:
        yield url, proc.pid
    finally:
        stop(proc)


def series(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def test_metrics_cover_every_worker(two_workers: tuple[str, int]) -> None:
    url, pid = two_workers
    # Two worker processes really serve: a scrape answered by either must show the other's work too.
    workers = [p for p in process_tree(pid) if "_bentoml_impl.worker" in " ".join(p.cmdline())]
    assert len(workers) == 2
    sent = 40
    for i in range(sent):
        # A new connection per request, so that the kernel spreads them over both workers' accept queues.
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as c:
            assert c.post("/v1/personalize", json={"customer_id": f"c{i % N_CUSTOMERS}"}).status_code == 200
    for _ in range(8):
        with httpx.Client(base_url=url, timeout=10) as c:
            text = c.get("/metrics").text
        assert series(text, "cxpredict_coalesced_requests_total", '{endpoint="personalize"}') == sent
        assert 1 <= series(text, "cxpredict_coalesced_calls_total", '{endpoint="personalize"}') <= sent
        assert series(text, "cxpredict_model_version", '{model="churn"}') == 1
        assert series(text, "cxpredict_online_store_customers") == N_CUSTOMERS
        assert series(text, "cxpredict_model_reloads_total") == 0
