"""How ``benchmarks/quality.py`` pools the synthetic draws' targeting differences (made-up results, no training)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cxpredict_quality_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_pooled_mean_of_independent_estimates(bench: ModuleType) -> None:
    z = 1.959963984540054
    # Two estimates with standard errors 3 and 4: the mean's standard error is 5 / 2.
    value, low, high = bench.pooled([(10.0, 10.0 - 3 * z, 10.0 + 3 * z), (20.0, 20.0 - 4 * z, 20.0 + 4 * z)])
    assert value == pytest.approx(15.0)
    assert (high - low) / 2 == pytest.approx(z * 2.5)
    assert low == pytest.approx(15.0 - z * 2.5)


def _targeting(bench: ModuleType, diff: float) -> pd.DataFrame:
    rows = {}
    for share in bench.TARGET_SHARES:
        label = f"{share * 1000:.0f} ({share:.0%} of customers x offer's cost)"  # budgets differ between draws
        for p in bench.POLICIES:
            d = float("nan") if p == "value_saved" else diff
            rows[(label, bench.TARGET_NAMES[p])] = {
                "target minus policy": d,
                "diff low_95": d - 1,
                "diff high_95": d + 1,
            }
    return pd.DataFrame.from_dict(rows, orient="index")


def test_draws_table_lines_up_budgets_by_share_and_pools_them(bench: ModuleType) -> None:
    runs = [bench.Result("synthetic", seed=7), bench.Result("synthetic", seed=1), bench.Result("synthetic", seed=2)]
    for r, diff in zip(runs, (2.0, -1.0, 5.0), strict=True):
        r.targeting = _targeting(bench, diff)
    table = bench.draws_table(runs)
    assert list(table.columns) == ["seed 7", "seed 1", "seed 2", "mean of 3 draws", "verdict (mean)"]
    assert len(table) == len(bench.TARGET_SHARES) * (len(bench.POLICIES) - 1)
    row = table.loc["50% budget: target minus highest CLTV"]
    assert row["seed 1"] == "-1.0 [-2.0, +0.0]"
    assert row["mean of 3 draws"].startswith("+2.0 [")
    # The mean of +2, -1 and +5 (each +-1) has a 95% half-width of 1/sqrt(3): above 0, so it wins.
    assert row["verdict (mean)"] == "wins"
    assert bench._interval_word(0.3, -0.2, 0.8) == "ahead, interval includes 0"
    assert bench._interval_word(-0.3, -0.8, -0.1) == "LOSES"


def test_draws_table_needs_two_draws_with_targeting(bench: ModuleType) -> None:
    one = bench.Result("synthetic", seed=7)
    one.targeting = _targeting(bench, 1.0)
    assert bench.draws_table([one, bench.Result("synthetic", seed=1)]) is None
