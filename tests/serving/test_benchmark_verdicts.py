"""How ``benchmarks/serving.py`` judges a run against the serving issue's targets (no server: made-up results)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "serving.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cxpredict_serving_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def results(bench: ModuleType, rps: dict[int, float], p99: float = 15.0, worst: float = 50.0, errors: int = 0) -> list:
    out = []
    for c in bench.CONNECTIONS:
        out.append(bench.Result("personalize", c, 10.0, int(rps[c] * 10), rps[c], 5.0, p99, worst, errors))
        out.append(bench.Result("bare", c, 10.0, 4000, 400.0, 10.0, 30.0, 300.0, 0, paired_with="personalize"))
    return out


def test_the_ratio_is_judged_at_eight_connections_and_only_reported_elsewhere(bench: ModuleType) -> None:
    verdict = bench.verdicts(results(bench, {1: 440.0, 8: 600.0, 32: 1600.0}))
    assert verdict["ratios"] == {1: 1.1, 8: 1.5, 32: 4.0}
    assert all(verdict["checks"].values()), verdict["checks"]
    verdict = bench.verdicts(results(bench, {1: 900.0, 8: 596.0, 32: 1600.0}))
    assert [name for name, ok in verdict["checks"].items() if not ok] == [
        "personalize: req/s >= 1.5x bare at 8 connections"
    ]


@pytest.mark.parametrize(
    ("p99", "worst", "errors", "failed"),
    [
        (20.0, 50.0, 0, "personalize: p99 < 20 ms at 8 connections"),
        (15.0, 100.0, 0, "personalize: max < 100 ms at 8 connections"),
        (15.0, 50.0, 1, "personalize: zero errors at every connection count"),
    ],
)
def test_latency_and_error_targets(bench: ModuleType, p99: float, worst: float, errors: int, failed: str) -> None:
    verdict = bench.verdicts(results(bench, {1: 800.0, 8: 800.0, 32: 800.0}, p99, worst, errors))
    assert [name for name, ok in verdict["checks"].items() if not ok] == [failed]
