"""A/B statistics: agreement with statsmodels/scipy, interval coverage, P(better), SRM, edge cases, validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from serving.ab_stats import (
    RATE,
    VALUE,
    analyze,
    compare_rates,
    compare_values,
    prob_beta_better,
    srm_check,
)

SHARES = {"champion": 0.5, "challenger": 0.5}


def make_units(
    sizes: dict[str, int],
    rates: dict[str, float] | None = None,
    value_shift: dict[str, float] | None = None,
    seed: int = 0,
    pre_missing: float = 0.1,
) -> pd.DataFrame:
    """Per-customer rows: conversions at the given rates, values correlated with a pre-period covariate."""
    rng = np.random.default_rng(seed)
    frames = []
    start = 0
    for arm, n in sizes.items():
        pre = rng.gamma(2.0, 10.0, n)
        value = 5.0 + 0.9 * pre + rng.normal(0.0, 8.0, n) + (value_shift or {}).get(arm, 0.0)
        pre[rng.random(n) < pre_missing] = np.nan
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(start, start + n)],
                    "variant": [arm] * n,
                    "first_ts": 1.7e9 + rng.uniform(0, 14 * 86400, n),
                    "decisions": rng.integers(1, 5, n),
                    "converted": (rng.random(n) < (rates or {}).get(arm, 0.1)).astype(int),
                    "value": value,
                    "pre_value": pre,
                }
            )
        )
        start += n
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------------------
# agreement with statsmodels / scipy

COUNT_PAIRS = [
    (120, 1000, 100, 1000),
    (5, 50, 3, 60),
    (1, 7, 6, 9),
    (480, 4000, 400, 4000),
    (0, 30, 4, 25),
    (999, 1000, 990, 1000),
]


@pytest.mark.parametrize(("conv_v", "n_v", "conv_c", "n_c"), COUNT_PAIRS)
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_rates_match_statsmodels(conv_v: int, n_v: int, conv_c: int, n_c: int, alpha: float) -> None:
    comp = compare_rates(conv_v, n_v, conv_c, n_c, variant="b", control="a", alpha=alpha)
    _, p_value = proportions_ztest([conv_v, conv_c], [n_v, n_c])
    low, high = confint_proportions_2indep(conv_v, n_v, conv_c, n_c, compare="diff", method="wald", alpha=alpha)
    assert comp.metric == RATE
    assert comp.difference == pytest.approx(conv_v / n_v - conv_c / n_c, abs=1e-15)
    assert comp.p_value == pytest.approx(float(p_value), rel=1e-9, abs=1e-15)
    assert comp.ci_low == pytest.approx(float(low), rel=1e-9, abs=1e-15)
    assert comp.ci_high == pytest.approx(float(high), rel=1e-9, abs=1e-15)
    if conv_c:
        assert comp.relative_lift == pytest.approx(comp.difference / (conv_c / n_c))


def _welch_by_hand(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[float, float]:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    return diff - half, diff + half


@pytest.mark.parametrize(
    ("n_v", "n_c", "scale_v", "scale_c"),
    [(2, 3, 1.0, 1.0), (15, 40, 3.0, 1.0), (200, 180, 10.0, 12.0), (2000, 3000, 5.0, 5.5)],
)
def test_welch_matches_scipy(n_v: int, n_c: int, scale_v: float, scale_c: float) -> None:
    rng = np.random.default_rng(n_v + n_c)
    a = rng.gamma(1.5, scale_v, n_v)
    b = rng.gamma(1.5, scale_c, n_c)
    for alpha in (0.05, 0.01):
        comp = compare_values(a, b, variant="b", control="a", alpha=alpha)
        res = stats.ttest_ind(a, b, equal_var=False)
        low, high = _welch_by_hand(a, b, alpha)
        scipy_ci = res.confidence_interval(confidence_level=1 - alpha)
        assert comp.metric == VALUE
        assert comp.difference == pytest.approx(a.mean() - b.mean(), rel=1e-12)
        assert comp.p_value == pytest.approx(float(res.pvalue), rel=1e-9)
        assert (comp.ci_low, comp.ci_high) == pytest.approx((low, high), rel=1e-9)
        assert (comp.ci_low, comp.ci_high) == pytest.approx((scipy_ci.low, scipy_ci.high), rel=1e-9)
        se = math.sqrt(a.var(ddof=1) / n_v + b.var(ddof=1) / n_c)
        assert comp.prob_better == pytest.approx(stats.norm.cdf((a.mean() - b.mean()) / se), rel=1e-9)
        assert comp.cuped_difference is None


def test_analyze_agrees_with_the_building_blocks() -> None:
    units = make_units({"champion": 900, "challenger": 1100}, rates={"challenger": 0.13}, value_shift={"challenger": 2})
    result = analyze(units, SHARES, "champion")
    arm = units["variant"] == "challenger"
    ctl = units["variant"] == "champion"
    rate = compare_rates(
        int(units.loc[arm, "converted"].sum()),
        int(arm.sum()),
        int(units.loc[ctl, "converted"].sum()),
        int(ctl.sum()),
        variant="challenger",
        control="champion",
    )
    value = compare_values(
        units.loc[arm, "value"].to_numpy(),
        units.loc[ctl, "value"].to_numpy(),
        variant="challenger",
        control="champion",
        pre_v=units.loc[arm, "pre_value"].to_numpy(),
        pre_c=units.loc[ctl, "pre_value"].to_numpy(),
    )
    assert result.comparison("challenger", RATE) == rate
    assert result.comparison("challenger", VALUE) == value
    assert [c.metric for c in result.comparisons] == [RATE, VALUE]
    summary = result.variant("challenger")
    assert summary.customers == 1100
    assert summary.decisions == int(units.loc[arm, "decisions"].sum())
    assert summary.conversions == int(units.loc[arm, "converted"].sum())
    assert summary.outcome_rate == pytest.approx(units.loc[arm, "converted"].mean())
    assert summary.value_per_customer == pytest.approx(units.loc[arm, "value"].mean())
    assert summary.value_sd == pytest.approx(units.loc[arm, "value"].std(ddof=1))
    assert summary.observed_share == pytest.approx(0.55)
    assert summary.expected_share == pytest.approx(0.5)
    assert result.customers == 2000
    assert result.control == "champion"
    # Deterministic, and serialisable without NaN.
    assert analyze(units, SHARES, "champion") == result
    json.dumps(result.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------------------------------------------
# coverage with a known effect


def test_rate_interval_coverage() -> None:
    rng = np.random.default_rng(20240601)
    runs, n = 300, 4000
    covered = 0
    for _ in range(runs):
        conv_c, conv_v = int(rng.binomial(n, 0.10)), int(rng.binomial(n, 0.12))
        comp = compare_rates(conv_v, n, conv_c, n, variant="b", control="a")
        covered += comp.ci_low <= 0.02 <= comp.ci_high
    assert 0.92 <= covered / runs <= 0.98


def test_welch_interval_coverage() -> None:
    rng = np.random.default_rng(7)
    runs, n = 300, 4000
    true_diff = 2.0 * 11.0 - 2.0 * 10.0  # gamma means: shape * scale
    covered = 0
    for _ in range(runs):
        comp = compare_values(rng.gamma(2.0, 11.0, n), rng.gamma(2.0, 10.0, n), variant="b", control="a", alpha=0.05)
        covered += comp.ci_low <= true_diff <= comp.ci_high
    assert 0.92 <= covered / runs <= 0.98


def test_cuped_covers_and_narrows() -> None:
    rng = np.random.default_rng(11)
    runs, n, effect = 300, 2000, 1.5
    covered_cuped = 0
    widths_plain, widths_cuped, reductions = [], [], []
    for _ in range(runs):
        x_c, x_v = rng.gamma(2.0, 10.0, n), rng.gamma(2.0, 10.0, n)
        y_c = 5.0 + 0.9 * x_c + rng.normal(0.0, 8.0, n)
        y_v = 5.0 + effect + 0.9 * x_v + rng.normal(0.0, 8.0, n)
        # Some customers have no pre-period history.
        x_c[rng.random(n) < 0.1] = np.nan
        x_v[rng.random(n) < 0.1] = np.nan
        comp = compare_values(y_v, y_c, variant="b", control="a", pre_v=x_v, pre_c=x_c)
        covered_cuped += comp.cuped_ci_low <= effect <= comp.cuped_ci_high
        widths_plain.append(comp.ci_high - comp.ci_low)
        widths_cuped.append(comp.cuped_ci_high - comp.cuped_ci_low)
        reductions.append(comp.variance_reduction)
    assert 0.92 <= covered_cuped / runs <= 0.98
    assert np.mean(widths_cuped) < 0.8 * np.mean(widths_plain)
    assert min(reductions) > 0.3


def test_cuped_matches_its_definition() -> None:
    rng = np.random.default_rng(3)
    x_v, x_c = rng.gamma(2.0, 10.0, 300), rng.gamma(2.0, 10.0, 250)
    y_v, y_c = 2.0 + x_v + rng.normal(0, 5, 300), x_c + rng.normal(0, 5, 250)
    x_v[:40] = np.nan
    comp = compare_values(y_v, y_c, variant="b", control="a", pre_v=x_v, pre_c=x_c)
    x = np.concatenate([x_v, x_c])
    x = np.where(np.isnan(x), np.nanmean(x), x)
    y = np.concatenate([y_v, y_c])
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    adjusted = y - theta * (x - x.mean())
    res = stats.ttest_ind(adjusted[:300], adjusted[300:], equal_var=False)
    assert comp.cuped_difference == pytest.approx(adjusted[:300].mean() - adjusted[300:].mean(), rel=1e-9)
    assert comp.cuped_p_value == pytest.approx(float(res.pvalue), rel=1e-9)
    ci = res.confidence_interval()
    assert (comp.cuped_ci_low, comp.cuped_ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert comp.variance_reduction == pytest.approx(1 - adjusted.var(ddof=1) / y.var(ddof=1), rel=1e-9)
    assert "CUPED on pre_value" in comp.method


@pytest.mark.parametrize(
    ("pre_v", "reason"),
    [
        (np.where(np.arange(100) < 90, np.nan, 1.0), "known for"),  # 10 + 30 of 200 known
        (np.full(100, 7.0), "no variance"),
    ],
)
def test_cuped_not_applied(pre_v: np.ndarray, reason: str) -> None:
    rng = np.random.default_rng(5)
    pre_c = np.where(np.arange(100) < 70, np.nan, 7.0)
    comp = compare_values(
        rng.normal(size=100), rng.normal(size=100), variant="b", control="a", pre_v=pre_v, pre_c=pre_c
    )
    assert comp.p_value is not None
    assert comp.cuped_difference is None
    assert comp.cuped_ci_low is comp.cuped_ci_high is comp.cuped_p_value is comp.variance_reduction is None
    assert "CUPED not applied" in comp.method
    assert reason in comp.method


def test_cuped_through_analyze_when_pre_value_mostly_missing() -> None:
    units = make_units({"champion": 400, "challenger": 400}, pre_missing=0.7)
    comp = analyze(units, SHARES, "champion").comparison("challenger", VALUE)
    assert comp.cuped_difference is None
    assert comp.variance_reduction is None
    units = make_units({"champion": 400, "challenger": 400}, pre_missing=0.3)
    comp = analyze(units, SHARES, "champion").comparison("challenger", VALUE)
    assert comp.cuped_difference is not None
    assert comp.variance_reduction > 0.3


# --------------------------------------------------------------------------------------------------------------
# P(better)


def test_prob_better_clear_winner_and_identical() -> None:
    assert compare_rates(600, 4000, 400, 4000, variant="b", control="a").prob_better > 0.99
    assert compare_rates(400, 4000, 600, 4000, variant="b", control="a").prob_better < 0.01
    assert 0.35 <= compare_rates(400, 4000, 400, 4000, variant="b", control="a").prob_better <= 0.65
    rng = np.random.default_rng(2)
    same = rng.gamma(2.0, 10.0, 500)
    assert 0.35 <= compare_values(same, same.copy(), variant="b", control="a").prob_better <= 0.65
    assert compare_values(same + 5.0, same, variant="b", control="a").prob_better > 0.99


@pytest.mark.parametrize(
    ("conv_v", "n_v", "conv_c", "n_c"),
    [(1050, 10000, 1000, 10000), (2200, 20000, 2150, 19000), (5100, 50000, 5000, 50000), (800, 9000, 820, 9000)],
)
def test_prob_better_matches_normal_approximation(conv_v: int, n_v: int, conv_c: int, n_c: int) -> None:
    p_v, p_c = conv_v / n_v, conv_c / n_c
    closed_form = stats.norm.cdf((p_v - p_c) / math.sqrt(p_v * (1 - p_v) / n_v + p_c * (1 - p_c) / n_c))
    exact = prob_beta_better(conv_v, n_v, conv_c, n_c)
    assert 0.05 < closed_form < 0.95  # the case is informative, not saturated
    assert exact == pytest.approx(closed_form, abs=0.02)


@pytest.mark.parametrize(
    ("conv_v", "n_v", "conv_c", "n_c"),
    # One case per form of the exact sum (smallest posterior parameter: a_c, b_v, a_v, b_c).
    [(7, 40, 3, 35), (30, 30, 28, 30), (0, 5, 1, 9), (28, 30, 30, 30)],
)
def test_prob_better_exact_sum_matches_monte_carlo(conv_v: int, n_v: int, conv_c: int, n_c: int) -> None:
    rng = np.random.default_rng(99)
    draws = 1_000_000
    mc = np.mean(rng.beta(1 + conv_v, 1 + n_v - conv_v, draws) > rng.beta(1 + conv_c, 1 + n_c - conv_c, draws))
    assert prob_beta_better(conv_v, n_v, conv_c, n_c) == pytest.approx(mc, abs=0.003)
    # The Monte Carlo fallback (forced here) is seeded and close to the exact value.
    fallback = prob_beta_better(conv_v, n_v, conv_c, n_c, seed=4, max_terms=0)
    assert fallback == prob_beta_better(conv_v, n_v, conv_c, n_c, seed=4, max_terms=0)
    assert fallback == pytest.approx(prob_beta_better(conv_v, n_v, conv_c, n_c), abs=0.005)


def test_prob_better_is_complementary() -> None:
    for counts in [(7, 40, 3, 35), (30, 30, 28, 30), (0, 5, 1, 9), (120, 1000, 100, 1000)]:
        conv_v, n_v, conv_c, n_c = counts
        forward = prob_beta_better(conv_v, n_v, conv_c, n_c)
        assert forward + prob_beta_better(conv_c, n_c, conv_v, n_v) == pytest.approx(1.0, abs=1e-9)


def test_prob_better_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="conversions"):
        prob_beta_better(5, 4, 1, 10)


# --------------------------------------------------------------------------------------------------------------
# sample ratio mismatch


def test_srm_flags_a_real_mismatch() -> None:
    srm = srm_check({"champion": 10_400, "challenger": 9_600}, SHARES)
    assert srm.mismatch
    assert 1e-9 < srm.p_value < 1e-7
    expected = stats.chisquare([10_400, 9_600], [10_000, 10_000])
    assert srm.chi2 == pytest.approx(expected.statistic)
    assert srm.p_value == pytest.approx(expected.pvalue)
    assert srm.expected == {"champion": pytest.approx(10_000), "challenger": pytest.approx(10_000)}


def test_srm_accepts_sampling_noise() -> None:
    srm = srm_check({"champion": 10_050, "challenger": 9_950}, SHARES)
    assert not srm.mismatch
    assert srm.p_value == pytest.approx(stats.chisquare([10_050, 9_950]).pvalue)
    assert srm.p_value > 0.4


def test_srm_with_a_holdout_arm() -> None:
    shares = {"champion": 0.45, "challenger": 0.45, "holdout": 0.10}
    ok = srm_check({"champion": 9_000, "challenger": 9_050, "holdout": 1_950}, shares)
    assert not ok.mismatch
    starved = srm_check({"champion": 9_300, "challenger": 9_300, "holdout": 1_400}, shares)
    assert starved.mismatch
    assert starved.expected["holdout"] == pytest.approx(2_000)

    units = make_units({"champion": 450, "challenger": 450, "holdout": 100})
    result = analyze(units, shares, "champion")
    assert not result.srm.mismatch
    assert result.srm.observed == {"champion": 450, "challenger": 450, "holdout": 100}
    assert [c.variant for c in result.comparisons] == ["challenger", "challenger", "holdout", "holdout"]
    assert result.variant("holdout").expected_share == pytest.approx(0.10)


def test_srm_threshold_is_respected_and_zero_share_arm() -> None:
    counts = {"champion": 10_100, "challenger": 9_900}  # p ~ 0.157
    assert srm_check(counts, SHARES, threshold=0.2).mismatch
    assert not srm_check(counts, SHARES, threshold=0.1).mismatch
    shares = {"champion": 0.5, "challenger": 0.5, "retired": 0.0}
    assert not srm_check(counts, shares).mismatch
    leaking = srm_check({**counts, "retired": 3}, shares)
    assert leaking.mismatch
    assert leaking.p_value == 0.0


# --------------------------------------------------------------------------------------------------------------
# edge cases


def test_arm_without_customers() -> None:
    units = make_units({"champion": 300})
    result = analyze(units, SHARES, "champion")
    empty = result.variant("challenger")
    assert (empty.customers, empty.decisions, empty.conversions, empty.observed_share) == (0, 0, 0, 0.0)
    assert empty.outcome_rate is None and empty.value_per_customer is None and empty.value_sd is None
    assert result.srm.mismatch
    for metric in (RATE, VALUE):
        comp = result.comparison("challenger", metric)
        assert comp.variant_mean is None
        assert comp.control_mean is not None
        assert comp.difference is comp.ci_low is comp.ci_high is comp.p_value is comp.prob_better is None
        assert "not computed" in comp.method
        assert "challenger" in comp.method
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["variants"][1]["outcome_rate"] is None
    assert payload["comparisons"][0]["p_value"] is None


def test_empty_control_arm() -> None:
    units = make_units({"challenger": 50})
    comp = analyze(units, SHARES, "champion").comparison("challenger", RATE)
    assert comp.control_mean is None
    assert comp.p_value is None
    assert "champion" in comp.method


@pytest.mark.parametrize("converted", [0, 1])
def test_same_degenerate_rate_in_both_arms(converted: int) -> None:
    units = make_units({"champion": 200, "challenger": 200})
    units["converted"] = converted
    comp = analyze(units, SHARES, "champion").comparison("challenger", RATE)
    assert comp.difference == 0.0
    assert comp.p_value == 1.0
    assert (comp.ci_low, comp.ci_high) == (0.0, 0.0)
    assert comp.prob_better == pytest.approx(0.5)
    assert "p-value set to 1.0" in comp.method


def test_one_sided_zero_rate_still_tested() -> None:
    comp = compare_rates(0, 500, 10, 500, variant="b", control="a")
    assert comp.difference == pytest.approx(-0.02)
    assert comp.p_value == pytest.approx(float(proportions_ztest([0, 10], [500, 500])[1]))
    assert comp.prob_better < 0.01
    assert "unreliable" in comp.method
    assert "unreliable" not in compare_rates(50, 500, 60, 500, variant="b", control="a").method


def test_constant_values() -> None:
    zeros = compare_values(np.zeros(50), np.zeros(40), variant="b", control="a")
    assert zeros.difference == 0.0
    assert zeros.p_value == 1.0
    assert (zeros.ci_low, zeros.ci_high) == (0.0, 0.0)
    assert zeros.prob_better == 0.5
    assert zeros.relative_lift is None  # control mean 0
    shifted = compare_values(np.full(50, 3.0), np.full(40, 1.0), variant="b", control="a")
    assert shifted.p_value == 0.0
    assert (shifted.ci_low, shifted.ci_high) == (2.0, 2.0)
    assert shifted.prob_better == 1.0
    assert shifted.relative_lift == pytest.approx(2.0)


def test_welch_needs_two_customers_per_arm() -> None:
    units = make_units({"champion": 100, "challenger": 1})
    result = analyze(units, SHARES, "champion")
    value = result.comparison("challenger", VALUE)
    assert value.difference == pytest.approx(units["value"].iloc[-1] - units["value"].iloc[:100].mean())
    assert value.ci_low is value.ci_high is value.p_value is value.prob_better is value.cuped_difference is None
    assert "at least 2 customers" in value.method
    assert result.comparison("challenger", RATE).p_value is not None
    assert result.variant("challenger").value_sd is None
    json.dumps(result.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------------------------------------------
# validation


def test_empty_units() -> None:
    with pytest.raises(ValueError, match="no decisions logged for this experiment"):
        analyze(make_units({"champion": 5}).iloc[0:0], SHARES, "champion")
    with pytest.raises(ValueError, match="no decisions logged for this experiment"):
        analyze(pd.DataFrame(), SHARES, "champion")


@pytest.mark.parametrize(
    "column", ["customer_id", "variant", "first_ts", "decisions", "converted", "value", "pre_value"]
)
def test_missing_column_is_named(column: str) -> None:
    units = make_units({"champion": 5, "challenger": 5}).drop(columns=[column])
    with pytest.raises(ValueError, match=column):
        analyze(units, SHARES, "champion")


@pytest.mark.parametrize(
    ("column", "bad"),
    [
        ("customer_id", lambda s: np.arange(len(s))),
        ("variant", lambda s: np.zeros(len(s), dtype=int)),
        ("first_ts", lambda s: s.astype(str)),
        ("first_ts", lambda s: s.where(s.index > 0, np.nan)),
        ("decisions", lambda s: s.astype(float)),
        ("decisions", lambda s: s * 0),
        ("converted", lambda s: s.astype(float)),
        ("converted", lambda s: s + 1),
        ("value", lambda s: s.astype(str)),
        ("value", lambda s: s.where(s.index > 0, np.inf)),
        ("pre_value", lambda s: s.astype(str)),
        ("pre_value", lambda s: s.where(s.index > 0, -np.inf)),
    ],
)
def test_bad_column_is_named(column: str, bad: object) -> None:
    units = make_units({"champion": 5, "challenger": 5})
    units[column] = bad(units[column])  # type: ignore[operator]
    with pytest.raises(ValueError, match=column):
        analyze(units, SHARES, "champion")


def test_duplicate_customers_rejected() -> None:
    units = make_units({"champion": 5, "challenger": 5})
    units.loc[9, "customer_id"] = units.loc[0, "customer_id"]
    with pytest.raises(ValueError, match="customer_id"):
        analyze(units, SHARES, "champion")


def test_object_dtype_strings_and_bool_conversions_are_accepted() -> None:
    units = make_units({"champion": 50, "challenger": 50})
    reference = analyze(units, SHARES, "champion")
    units["customer_id"] = units["customer_id"].astype(object)
    units["variant"] = units["variant"].astype(object)
    units["converted"] = units["converted"].astype(bool)
    assert analyze(units, SHARES, "champion") == reference


def test_share_and_control_errors() -> None:
    units = make_units({"champion": 5, "challenger": 5})
    with pytest.raises(ValueError, match="sum to 1"):
        analyze(units, {"champion": 0.5, "challenger": 0.4}, "champion")
    with pytest.raises(ValueError, match="control 'baseline'"):
        analyze(units, SHARES, "baseline")
    with pytest.raises(ValueError, match="variant"):
        analyze(units, {"champion": 1.0}, "champion")
    with pytest.raises(ValueError, match="alpha"):
        analyze(units, SHARES, "champion", alpha=1.5)
    # Shares off by less than the tolerance are fine.
    assert analyze(units, {"champion": 0.5, "challenger": 0.5000005}, "champion").customers == 10
