"""How ``benchmarks/quality.py`` pools the synthetic draws and values choices by the truth (made-up data)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from training.nbo import NBOEvaluation

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


def test_window_mean_pools_each_rows_windows_and_averages_the_truth(bench: ModuleType) -> None:
    newest, older = _targeting(bench, 4.0), _targeting(bench, -2.0)
    older.index = [(f"older {b}", p) for b, p in older.index]  # budget amounts differ between windows
    newest["target minus policy (true)"], older["target minus policy (true)"] = 3.0, 1.0
    mean = bench.window_mean([newest, older])
    assert list(mean.index) == list(newest.index)
    row = mean.loc[(newest.index[1][0], bench.TARGET_NAMES["cltv"])]
    # Two windows, each +-1 at 95%: the mean +1 has a half-width of sqrt(2) / 2.
    assert row["target minus policy"] == pytest.approx(1.0)
    assert row["diff high_95"] - row["target minus policy"] == pytest.approx(np.sqrt(2) / 2)
    assert row["target minus policy (true)"] == pytest.approx(2.0)
    del older["target minus policy (true)"]
    assert "target minus policy (true)" not in bench.window_mean([newest, older]).columns
    # A draw with one window has nothing to pool: the section is left out.
    one = bench.Result("synthetic", seed=7, targeting=newest, targeting_windows=[newest])
    assert bench.windows_section([one]) == []
    two = [bench.Result("synthetic", seed=s, targeting=newest, targeting_windows=[newest, older]) for s in (7, 1)]
    text = "\n".join(bench.windows_section(two))
    assert "rolling origin" in text and "+1.0 [" in text
    # A draw with a single window from T - H on still counts, with that window alone.
    single = bench.Result("synthetic", seed=3, targeting=newest, targeting_windows=[newest])
    text = "\n".join(bench.windows_section([two[0], single]))
    assert "seed 3: 1" in text and "mean of 2 draws" in text and "+4.0 [+3.0, +5.0]" in text


def test_true_value_saved_is_the_uplift_times_value_minus_cost_of_the_contacted(bench: ModuleType) -> None:
    ts = pd.Timestamp("2024-11-02 10:00:00")
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "offer_ts": [ts, ts, ts + pd.Timedelta(days=1)]})
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "c"],
            # c's second offer: the logged one is the first, so this row must not be read.
            "offer_ts": [ts, ts, ts + pd.Timedelta(days=1), ts + pd.Timedelta(days=9)],
            "p_none": [0.1, 0.2, 0.3, 0.0],
            "p_gift": [0.5, 0.2, 0.4, 1.0],
        }
    )
    offers = [{"offer_id": "gift", "value": 10.0, "cost": 1.0}]
    # a: (0.5 - 0.1) * 10 - 1 = 3; c: (0.4 - 0.3) * 10 - 1 = 0; b is not contacted.
    assert bench.true_value_saved(frame, {"a": "gift", "c": "gift"}, truth, offers) == pytest.approx(3.0)
    assert bench.true_value_saved(frame, {"b": "gift"}, truth, offers) == pytest.approx(-1.0)
    assert bench.true_value_saved(frame, {}, truth, offers) == 0.0
    with pytest.raises(ValueError, match="customer a"):
        bench.true_value_saved(frame, {"a": "gift"}, truth.iloc[1:], offers)
    # In spend, the expected revenue the offer brings over no contact, minus cost: a 30 - 5 - 1, c 4 - 6 - 1.
    truth["s_none"], truth["s_gift"] = [5.0, 4.0, 6.0, 0.0], [30.0, 4.0, 4.0, 99.0]
    spend = bench.true_value_saved(frame, {"a": "gift", "c": "gift"}, truth, offers, bench.SPEND)
    assert spend == pytest.approx(24.0 - 3.0)
    assert bench.true_value_saved(frame, {"a": "gift", "c": "gift"}, truth, offers) == pytest.approx(3.0)


def test_true_draws_table_counts_the_draws_target_is_ahead_in(bench: ModuleType) -> None:
    runs = [bench.Result("synthetic", seed=7), bench.Result("synthetic", seed=1), bench.Result("synthetic", seed=2)]
    for r, diff in zip(runs, (2.0, -1.0, 5.0), strict=True):
        r.targeting = _targeting(bench, 0.0)
        r.targeting["target minus policy (true)"] = [
            float("nan") if p == "value_saved" else diff for _ in bench.TARGET_SHARES for p in bench.POLICIES
        ]
    table = bench.true_draws_table(runs)
    row = table.loc["10% budget: target minus random"]
    assert row["seed 1"] == "-1.0" and row["mean of 3 draws"] == "+2.0" and row["target ahead in"] == "2 of 3 draws"
    runs[1].targeting = runs[1].targeting.drop(columns="target minus policy (true)")  # a draw without truth
    assert bench.true_draws_table(runs[:2]) is None


def test_true_policy_values_reads_each_policys_picks(bench: ModuleType) -> None:
    ts = pd.Timestamp("2024-11-02")
    hold = pd.DataFrame({"customer_id": ["a", "b"], "offer_ts": [ts, ts], "offer_id": ["none", "gift"]})
    truth = pd.DataFrame({"customer_id": ["a", "b"], "offer_ts": [ts, ts], "p_none": [0.1, 0.2], "p_gift": [0.5, 0.1]})
    # Arm values: a gains (0.5 - 0.1) * 10 - 1 = 3 from the gift, b loses (0.1 - 0.2) * 10 - 1 = -2.
    ev = NBOEvaluation(
        arms=["none", "gift"], picks={"t": np.array([1, 0])}, single_pick=np.array([1, 1]), best_single_offer="gift"
    )
    offers = [{"offer_id": "gift", "value": 10.0, "cost": 1.0}]
    served = SimpleNamespace(meta=SimpleNamespace(offers=offers, policy=bench.BEST_SINGLE, candidate="t"))
    out = bench.true_policy_values(hold, ev, truth, served)
    assert out["t-learner policy"] == pytest.approx(1.5)
    assert out["best single offer (gift)"] == pytest.approx(0.5)
    assert out["random arm"] == pytest.approx(0.25)
    assert out["logged policy"] == pytest.approx(-1.0)
    assert out["served policy (what predict and serving do)"] == pytest.approx(0.5)
    served.meta.policy = "learned"
    assert bench.true_policy_values(hold, ev, truth, served)["served policy (what predict and serving do)"] == 1.5
    # In spend: a gains 20 - 2 - 1 = 17 from the gift, b 3 - 8 - 1 = -6.
    truth["s_none"], truth["s_gift"] = [2.0, 8.0], [20.0, 3.0]
    spend = bench.true_policy_values(hold, ev, truth, served, bench.SPEND)
    assert spend["t-learner policy"] == pytest.approx(8.5) and spend["best single offer (gift)"] == pytest.approx(5.5)


def test_the_btyd_simulation_follows_its_model(bench: ModuleType) -> None:
    from training.btyd import BetaGeoFitter, GammaGammaFitter, rfm_summary

    config = bench.BtydSimConfig(seed=3, n_customers=3000)
    tx = bench.simulate(config)
    first = tx.groupby("customer_id").ts.min()
    assert tx.customer_id.nunique() == 3000 and (tx.amount > 0).all()
    assert (first - pd.Timestamp(config.start)).max() < pd.Timedelta(weeks=config.acquisition_weeks)
    assert tx.ts.max() < pd.Timestamp(config.start) + pd.Timedelta(weeks=config.weeks)
    # Fitted back on the whole period, BG/NBD and Gamma-Gamma find the parameters the data was drawn from.
    summary = rfm_summary(tx, pd.Timestamp(config.start) + pd.Timedelta(weeks=config.weeks))
    bg = BetaGeoFitter().fit(summary.frequency, summary.recency, summary["T"]).params_
    assert bg["r"] / bg["alpha"] == pytest.approx(config.r / config.alpha, rel=0.2)  # the mean purchase rate
    assert bg["a"] / (bg["a"] + bg["b"]) == pytest.approx(config.a / (config.a + config.b), rel=0.25)
    repeat = summary[summary.frequency > 0]
    gg = GammaGammaFitter().fit(repeat.frequency, repeat.monetary_value).params_
    mean_spend = config.p * config.v / (config.q - 1)
    assert gg["p"] * gg["v"] / (gg["q"] - 1) == pytest.approx(mean_spend, rel=0.15)


def test_cdnow_runs_only_with_its_folder_and_from_it(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--datasets", "cdnow", "--out", str(tmp_path / "q.md")])
    assert "--cdnow DIR" in capsys.readouterr().err and not (tmp_path / "q.md").exists()
    # Its tables come from the folder given (the importer's own file name), not from ../shared/datasets.
    src = tmp_path / "src"
    src.mkdir()
    (src / "CDNOW_master.txt").write_text("00001 19970101 1 11.77\n00002 19970105 2 20.00\n")
    bench.prepare("cdnow", tmp_path / "out", source=src)
    tx = pd.read_parquet(tmp_path / "out" / "transactions.parquet")
    assert tx.customer_id.tolist() == ["00001", "00002"] and tx.amount.sum() == pytest.approx(31.77)
