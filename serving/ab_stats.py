"""Statistics for A/B tests between model versions (CONTRACT §5): pure functions, no I/O.

The input is one row per customer (the randomisation unit), already aggregated from the decision log by the
caller. :func:`analyze` summarises every arm, compares every arm with the control on two metrics and checks the
sample ratio:

- ``outcome_rate`` (share of customers with at least one conversion): pooled two-proportion z-test (the same
  numbers as ``statsmodels.stats.proportion.proportions_ztest``), unpooled Wald interval (as
  ``confint_proportions_2indep(..., compare="diff", method="wald")``), and P(better) from independent
  Beta(1 + conversions, 1 + non-conversions) posteriors, computed by an exact finite sum.
- ``value_per_customer``: Welch t-test (as ``scipy.stats.ttest_ind(equal_var=False)``), interval from the
  Welch-Satterthwaite degrees of freedom, P(better) = Phi(difference / se); plus CUPED on ``pre_value`` when it is
  known for at least half of the customers of the two arms being compared.
- Sample ratio mismatch: chi-square goodness of fit of customers per arm against the configured shares.

Edge cases (all documented on the functions): an arm without customers gives ``None`` statistics and a ``method``
note instead of an error; when both arms have the same degenerate outcome (every customer converted, or none did,
or the values have zero variance and equal means) the difference is 0 and the p-value is **1.0** (no evidence of a
difference), with an interval of [0, 0]; Welch needs at least two customers per arm, otherwise its fields are
``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

RATE = "outcome_rate"
VALUE = "value_per_customer"
METRICS = (RATE, VALUE)

#: Columns of the ``units`` frame, in the order the caller builds them.
UNIT_COLUMNS = ("customer_id", "variant", "first_ts", "decisions", "converted", "value", "pre_value")

#: CUPED is used only when ``pre_value`` is known for at least this share of the compared customers.
CUPED_MIN_COVERAGE = 0.5

#: The exact Beta sum has as many terms as the smallest posterior parameter; above this, seeded Monte Carlo is used.
EXACT_BETA_MAX_TERMS = 2_000_000
MONTE_CARLO_DRAWS = 400_000

_SHARE_TOLERANCE = 1e-6


def _plain(obj: Any) -> Any:
    """JSON-friendly copy: NaN/inf become None, numpy scalars become Python numbers, tuples become lists."""
    if isinstance(obj, _DictMixin):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}  # type: ignore[arg-type]
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


class _DictMixin:
    """``to_dict`` for the result dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable types (NaN and infinities become ``None``)."""
        return _plain(self)


@dataclass(frozen=True)
class VariantSummary(_DictMixin):
    """What one arm saw.

    Attributes:
        variant: Arm name.
        customers: Customers assigned to the arm (randomisation units).
        decisions: Decisions logged for them.
        conversions: Customers with at least one feedback with the analysed outcome.
        outcome_rate: ``conversions / customers``; ``None`` without customers.
        value_per_customer: Mean of ``value``; ``None`` without customers.
        value_sd: Sample standard deviation (ddof=1) of ``value``; ``None`` with fewer than 2 customers.
        expected_share: Configured traffic share (normalised to sum to 1).
        observed_share: Share of the experiment's customers in this arm.
    """

    variant: str
    customers: int
    decisions: int
    conversions: int
    outcome_rate: float | None
    value_per_customer: float | None
    value_sd: float | None
    expected_share: float
    observed_share: float


@dataclass(frozen=True)
class Comparison(_DictMixin):
    """One arm against the control on one metric.

    ``difference`` is always variant minus control. Fields that cannot be computed are ``None`` and ``method``
    says why. The ``cuped_*`` fields and ``variance_reduction`` are filled only for ``value_per_customer`` when
    CUPED applies.

    Attributes:
        variant: The compared arm.
        control: The control arm.
        metric: ``"outcome_rate"`` or ``"value_per_customer"``.
        control_mean: Control rate or mean value.
        variant_mean: Variant rate or mean value.
        difference: ``variant_mean - control_mean``.
        ci_low: Lower end of the ``1 - alpha`` interval of the difference.
        ci_high: Upper end of that interval.
        relative_lift: ``difference / control_mean``; ``None`` when the control mean is 0 or unknown.
        p_value: Two-sided p-value of "no difference".
        prob_better: Probability that the variant's true metric is above the control's.
        method: The tests used, and notes on anything not computed.
        cuped_difference: Difference of the CUPED-adjusted means.
        cuped_ci_low: Lower end of the CUPED interval.
        cuped_ci_high: Upper end of the CUPED interval.
        cuped_p_value: Welch p-value on the adjusted values.
        variance_reduction: ``1 - var(Y') / var(Y)`` on the pooled sample of the two arms.
    """

    variant: str
    control: str
    metric: str
    control_mean: float | None
    variant_mean: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    relative_lift: float | None
    p_value: float | None
    prob_better: float | None
    method: str
    cuped_difference: float | None = None
    cuped_ci_low: float | None = None
    cuped_ci_high: float | None = None
    cuped_p_value: float | None = None
    variance_reduction: float | None = None

    @classmethod
    def not_computed(
        cls,
        variant: str,
        control: str,
        metric: str,
        control_mean: float | None,
        variant_mean: float | None,
        why: str,
        difference: float | None = None,
        relative_lift: float | None = None,
    ) -> Comparison:
        """A comparison whose test could not run: the means (and difference) that exist, ``method`` says why."""
        return cls(
            variant=variant,
            control=control,
            metric=metric,
            control_mean=control_mean,
            variant_mean=variant_mean,
            difference=difference,
            ci_low=None,
            ci_high=None,
            relative_lift=relative_lift,
            p_value=None,
            prob_better=None,
            method=f"not computed: {why}",
        )


@dataclass(frozen=True)
class SrmCheck(_DictMixin):
    """Sample ratio mismatch check.

    Attributes:
        chi2: Chi-square statistic of customers per arm against the expected shares.
        p_value: Its p-value.
        mismatch: ``p_value < threshold``: the assignment or the logging is broken, so the comparison is not
            trustworthy.
        observed: Customers per arm.
        expected: Expected customers per arm (share times total).
        threshold: The p-value threshold used.
    """

    chi2: float
    p_value: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]
    threshold: float = 0.001


@dataclass(frozen=True)
class ExperimentResult(_DictMixin):
    """Everything :func:`analyze` found.

    Attributes:
        variants: One summary per arm, in the order of ``expected_shares``.
        comparisons: For every non-control arm (same order), the ``outcome_rate`` then the ``value_per_customer``
            comparison with the control.
        srm: The sample ratio mismatch check.
        alpha: Significance level; intervals are ``1 - alpha``.
        control: The control arm.
        customers: Customers in the experiment (all arms).
    """

    variants: tuple[VariantSummary, ...]
    comparisons: tuple[Comparison, ...]
    srm: SrmCheck
    alpha: float
    control: str
    customers: int

    def variant(self, name: str) -> VariantSummary:
        """The summary of arm ``name``.

        Raises:
            KeyError: No such arm.
        """
        for summary in self.variants:
            if summary.variant == name:
                return summary
        raise KeyError(name)

    def comparison(self, variant: str, metric: str) -> Comparison:
        """The comparison of ``variant`` with the control on ``metric``.

        Raises:
            KeyError: No such comparison.
        """
        for comp in self.comparisons:
            if comp.variant == variant and comp.metric == metric:
                return comp
        raise KeyError((variant, metric))


# --------------------------------------------------------------------------------------------------------------
# validation


def validate_units(units: pd.DataFrame) -> None:
    """Check the per-customer frame; every error names the offending column.

    Args:
        units: One row per customer with the columns of :data:`UNIT_COLUMNS`.

    Raises:
        ValueError: Empty frame, a missing column, a wrong dtype or an impossible value.
    """
    if not isinstance(units, pd.DataFrame):
        raise ValueError(f"units must be a pandas DataFrame, got {type(units).__name__}")
    if len(units) == 0:
        raise ValueError(
            "no decisions logged for this experiment (units is empty): check the experiment name and the time range"
        )
    missing = [c for c in UNIT_COLUMNS if c not in units.columns]
    if missing:
        raise ValueError(f"units is missing column(s) {', '.join(missing)}; expected {', '.join(UNIT_COLUMNS)}")

    for name in ("customer_id", "variant"):
        col = units[name]
        if not pd.api.types.is_string_dtype(col):
            raise ValueError(f"column {name} must hold strings, got dtype {col.dtype}")
        if col.isna().any():
            raise ValueError(f"column {name} has {int(col.isna().sum())} missing value(s)")
    for name in ("first_ts", "value", "pre_value"):
        col = units[name]
        if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
            raise ValueError(f"column {name} must be numeric, got dtype {col.dtype}")
    for name in ("first_ts", "value"):
        arr = units[name].to_numpy(dtype=float, na_value=np.nan)
        if not np.isfinite(arr).all():
            raise ValueError(f"column {name} must be finite, found {int((~np.isfinite(arr)).sum())} NaN/inf value(s)")
    pre = units["pre_value"].to_numpy(dtype=float, na_value=np.nan)
    if np.isinf(pre).any():
        raise ValueError("column pre_value must be finite or NaN (unknown), found infinities")
    col = units["decisions"]
    if not pd.api.types.is_integer_dtype(col.dtype) or col.isna().any():
        raise ValueError(f"column decisions must be integers without missing values, got dtype {col.dtype}")
    if (col < 1).any():
        raise ValueError(f"column decisions must be >= 1 (one row per customer with a decision), min is {col.min()}")
    col = units["converted"]
    if not (pd.api.types.is_integer_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)) or col.isna().any():
        raise ValueError(f"column converted must be 0/1 integers, got dtype {col.dtype}")
    if not col.astype(int).isin([0, 1]).all():
        raise ValueError("column converted must be 0 or 1 (at least one conversion per customer)")
    duplicated = units["customer_id"].duplicated()
    if duplicated.any():
        examples = ", ".join(map(repr, units.loc[duplicated, "customer_id"].head(3)))
        raise ValueError(
            f"column customer_id must be unique (one row per customer): {int(duplicated.sum())} duplicate(s), "
            f"e.g. {examples}"
        )


def _check_shares(expected_shares: Mapping[str, float], control: str) -> dict[str, float]:
    if not expected_shares:
        raise ValueError("expected_shares is empty")
    shares = {str(k): float(v) for k, v in expected_shares.items()}
    bad = {k: v for k, v in shares.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"expected_shares must be finite and >= 0, got {bad}")
    total = sum(shares.values())
    if abs(total - 1.0) > _SHARE_TOLERANCE:
        raise ValueError(f"expected_shares must sum to 1 (within {_SHARE_TOLERANCE:g}), got {total!r}")
    if control not in shares:
        raise ValueError(f"control {control!r} is not one of the arms in expected_shares: {sorted(shares)}")
    # scipy.stats.chisquare wants the expected counts to sum to the observed ones almost exactly.
    return {k: v / total for k, v in shares.items()}


# --------------------------------------------------------------------------------------------------------------
# building blocks


def _lift(difference: float | None, control_mean: float | None) -> float | None:
    if difference is None or control_mean is None or control_mean == 0:
        return None
    return difference / control_mean


def _beta_sum(a1: float, b1: float, a2: int, b2: float) -> float:
    """P(X2 > X1) for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2), with integer ``a2`` (Evan Miller's closed form)."""
    i = np.arange(a2, dtype=float)
    log_terms = special.betaln(a1 + i, b1 + b2) - np.log(b2 + i) - special.betaln(1 + i, b2) - special.betaln(a1, b1)
    return float(np.exp(log_terms).sum())


def prob_beta_better(
    conv_v: int, n_v: int, conv_c: int, n_c: int, seed: int = 0, max_terms: int = EXACT_BETA_MAX_TERMS
) -> float:
    """P(p_v > p_c) under independent Beta(1 + conversions, 1 + non-conversions) posteriors.

    The exact sum needs as many terms as the smallest of the four posterior parameters; it is used whenever that
    is at most ``max_terms`` (any realistic experiment). Above that, ``MONTE_CARLO_DRAWS`` seeded draws per arm
    estimate it (deterministic for a given ``seed``).

    Args:
        conv_v: Conversions in the variant.
        n_v: Customers in the variant.
        conv_c: Conversions in the control.
        n_c: Customers in the control.
        seed: Seed of the Monte Carlo fallback.
        max_terms: Largest exact sum to compute.

    Returns:
        The probability, in [0, 1].

    Raises:
        ValueError: Counts out of range.
    """
    for conv, n in ((conv_v, n_v), (conv_c, n_c)):
        if n < 0 or conv < 0 or conv > n:
            raise ValueError(f"need 0 <= conversions <= customers, got {conv} of {n}")
    a_v, b_v = 1 + int(conv_v), 1 + int(n_v) - int(conv_v)
    a_c, b_c = 1 + int(conv_c), 1 + int(n_c) - int(conv_c)
    if min(a_v, b_v, a_c, b_c) > max_terms:
        rng = np.random.default_rng(seed)
        draws_v = rng.beta(a_v, b_v, MONTE_CARLO_DRAWS)
        draws_c = rng.beta(a_c, b_c, MONTE_CARLO_DRAWS)
        return float(np.mean(draws_v > draws_c))
    # Four equivalent forms (swap the arms, or look at 1 - p ~ Beta(b, a)); sum over the smallest integer parameter.
    smallest = min(a_v, a_c, b_v, b_c)
    if smallest == a_v:
        prob = _beta_sum(a_c, b_c, a_v, b_v)
    elif smallest == a_c:
        prob = 1.0 - _beta_sum(a_v, b_v, a_c, b_c)
    elif smallest == b_c:
        # p_v > p_c  <=>  1 - p_c > 1 - p_v
        prob = _beta_sum(b_v, a_v, b_c, a_c)
    else:
        prob = 1.0 - _beta_sum(b_c, a_c, b_v, a_v)
    return min(1.0, max(0.0, prob))


def compare_rates(
    conv_v: int, n_v: int, conv_c: int, n_c: int, *, variant: str, control: str, alpha: float = 0.05, seed: int = 0
) -> Comparison:
    """Compare two conversion rates.

    p-value: pooled two-proportion z-test. Interval: unpooled Wald. P(better): Beta posteriors
    (:func:`prob_beta_better`). When both arms have the same degenerate rate (0 or 1), the pooled variance is 0:
    the difference is 0, the p-value is set to 1.0 and the interval to [0, 0]. An arm without customers gives
    ``None`` statistics and a note in ``method``.

    Args:
        conv_v: Conversions in the variant.
        n_v: Customers in the variant.
        conv_c: Conversions in the control.
        n_c: Customers in the control.
        variant: Name of the variant arm.
        control: Name of the control arm.
        alpha: Significance level.
        seed: Seed for the Monte Carlo fallback of P(better).

    Returns:
        The ``outcome_rate`` comparison.
    """
    method = "pooled two-proportion z-test; unpooled Wald CI; P(better) from Beta(1+conv, 1+n-conv) posteriors"
    p_v = conv_v / n_v if n_v > 0 else None
    p_c = conv_c / n_c if n_c > 0 else None
    empty = [name for name, n in ((control, n_c), (variant, n_v)) if n == 0]
    if p_v is None or p_c is None:
        return Comparison.not_computed(
            variant, control, RATE, p_c, p_v, f"no customers in {', '.join(repr(e) for e in empty)}"
        )
    diff = p_v - p_c
    pooled = (conv_v + conv_c) / (n_v + n_c)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_v + 1 / n_c))
    if se_pooled == 0:
        # Both arms all-0 or all-1: the statistic is 0/0; there is no evidence of a difference.
        p_value = 1.0
        method += "; both arms have the same degenerate rate, p-value set to 1.0"
    else:
        p_value = float(2 * stats.norm.sf(abs(diff / se_pooled)))
    if min(conv_v, n_v - conv_v, conv_c, n_c - conv_c) < 5:
        # The usual rule of thumb for the normal approximation; the numbers are still those of statsmodels.
        method += "; fewer than 5 conversions or non-conversions in an arm: z-test and Wald CI are unreliable"
    se = math.sqrt(p_v * (1 - p_v) / n_v + p_c * (1 - p_c) / n_c)
    half = float(stats.norm.isf(alpha / 2)) * se
    return Comparison(
        variant=variant,
        control=control,
        metric=RATE,
        control_mean=p_c,
        variant_mean=p_v,
        difference=diff,
        ci_low=diff - half,
        ci_high=diff + half,
        relative_lift=_lift(diff, p_c),
        p_value=p_value,
        prob_better=prob_beta_better(conv_v, n_v, conv_c, n_c, seed=seed),
        method=method,
    )


@dataclass(frozen=True)
class _Welch:
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float


def _welch(y_v: np.ndarray, y_c: np.ndarray, alpha: float) -> _Welch:
    """Welch t-test and interval; both arms have at least two values."""
    n_v, n_c = len(y_v), len(y_c)
    diff = float(y_v.mean() - y_c.mean())
    q_v, q_c = float(y_v.var(ddof=1)) / n_v, float(y_c.var(ddof=1)) / n_c
    se = math.sqrt(q_v + q_c)
    if se == 0:
        # Constant values in both arms: the interval collapses onto the (exact) difference.
        return _Welch(diff, diff, diff, 1.0 if diff == 0 else 0.0, 0.0)
    df = (q_v + q_c) ** 2 / (q_v**2 / (n_v - 1) + q_c**2 / (n_c - 1))
    p_value = float(2 * stats.t.sf(abs(diff / se), df))
    half = float(stats.t.isf(alpha / 2, df)) * se
    return _Welch(diff, diff - half, diff + half, p_value, se)


def _normal_prob_better(diff: float, se: float) -> float:
    if se == 0:
        return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
    return float(stats.norm.cdf(diff / se))


def _cuped(
    y_v: np.ndarray, y_c: np.ndarray, x_v: np.ndarray, x_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float] | str:
    """Adjusted values ``Y - theta (X - mean X)`` for both arms, theta and the variance reduction; or why not."""
    y = np.concatenate([y_v, y_c])
    x = np.concatenate([x_v, x_c])
    known = ~np.isnan(x)
    coverage = float(known.mean())
    if coverage < CUPED_MIN_COVERAGE:
        return f"CUPED not applied: pre_value known for {coverage:.0%} of customers (< {CUPED_MIN_COVERAGE:.0%})"
    if known.sum() < 2 or float(np.var(x[known])) == 0:
        return "CUPED not applied: pre_value has no variance"
    with np.errstate(over="ignore", invalid="ignore"):
        var_y = float(y.var(ddof=1))
    if var_y == 0:
        return "CUPED not applied: value has no variance"
    x = np.where(known, x, x[known].mean())
    x_centered = x - x.mean()
    with np.errstate(over="ignore", invalid="ignore"):
        theta = float(np.dot(x_centered, y - y.mean()) / np.dot(x_centered, x_centered))
        adjusted = y - theta * x_centered
        reduction = 1.0 - float(adjusted.var(ddof=1)) / var_y
    if not (math.isfinite(var_y) and math.isfinite(theta) and math.isfinite(reduction)):
        return "CUPED not applied: value or pre_value too large to adjust"
    return adjusted[: len(y_v)], adjusted[len(y_v) :], theta, reduction


def _overflow(y: np.ndarray) -> str | None:
    """Why the values cannot be averaged (not finite, or so large their mean or variance overflows), or None."""
    if not np.isfinite(y).all():
        return "values are not finite; value comparison skipped"
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(y.mean()) if len(y) else 0.0
        var = float(y.var(ddof=1)) if len(y) >= 2 else 0.0
    if not (math.isfinite(mean) and math.isfinite(var)):
        return f"values are too large to average (up to {float(np.abs(y).max()):.3g}); value comparison skipped"
    return None


def compare_values(
    y_v: np.ndarray,
    y_c: np.ndarray,
    *,
    variant: str,
    control: str,
    alpha: float = 0.05,
    pre_v: np.ndarray | None = None,
    pre_c: np.ndarray | None = None,
) -> Comparison:
    """Compare mean value per customer with Welch's t-test, and with CUPED when the covariate allows.

    P(better) is Phi(difference / se) (normal approximation). With fewer than two customers in an arm the test
    fields are ``None`` (means and difference are still given when both arms have a customer). When both arms
    have constant values the interval collapses to the difference and the p-value is 1.0 if the means are equal,
    0.0 otherwise.

    Values too large to average (their mean or variance overflows a float) give ``None`` statistics and a note
    instead of infinities and NaN.

    CUPED: when ``pre_v``/``pre_c`` are given, known (not NaN) for at least half of the pooled customers and not
    constant, NaN are filled with the pooled mean, theta = cov(Y, X) / var(X) on the pooled sample and Welch runs
    on Y' = Y - theta (X - mean X). Otherwise the ``cuped_*`` fields are ``None`` and ``method`` says why.

    Args:
        y_v: Values of the variant's customers.
        y_c: Values of the control's customers.
        variant: Name of the variant arm.
        control: Name of the control arm.
        alpha: Significance level.
        pre_v: Pre-period covariate of the variant's customers (NaN = unknown), same length as ``y_v``.
        pre_c: Same for the control.

    Returns:
        The ``value_per_customer`` comparison.
    """
    y_v = np.asarray(y_v, dtype=float)
    y_c = np.asarray(y_c, dtype=float)
    overflow = _overflow(y_v) or _overflow(y_c)
    if overflow:
        return Comparison.not_computed(variant, control, VALUE, None, None, overflow)
    mean_v = float(y_v.mean()) if len(y_v) else None
    mean_c = float(y_c.mean()) if len(y_c) else None
    diff = mean_v - mean_c if mean_v is not None and mean_c is not None else None
    base = dict(variant=variant, control=control, metric=VALUE, control_mean=mean_c, variant_mean=mean_v)
    small = [name for name, y in ((control, y_c), (variant, y_v)) if len(y) < 2]
    if small:
        return Comparison.not_computed(
            **base,
            why=f"Welch needs at least 2 customers per arm ({', '.join(map(repr, small))})",
            difference=diff,
            relative_lift=_lift(diff, mean_c),
        )
    plain = _welch(y_v, y_c, alpha)
    method = "Welch t-test; Welch-Satterthwaite CI; P(better) = Phi(difference / se)"
    cuped: dict[str, float | None] = {}
    if pre_v is not None and pre_c is not None:
        outcome = _cuped(y_v, y_c, np.asarray(pre_v, dtype=float), np.asarray(pre_c, dtype=float))
        if isinstance(outcome, str):
            method += f"; {outcome}"
        else:
            adj_v, adj_c, theta, reduction = outcome
            adjusted = _welch(adj_v, adj_c, alpha)
            cuped = dict(
                cuped_difference=adjusted.difference,
                cuped_ci_low=adjusted.ci_low,
                cuped_ci_high=adjusted.ci_high,
                cuped_p_value=adjusted.p_value,
                variance_reduction=reduction,
            )
            method += f"; CUPED on pre_value (theta={theta:.4g})"
    else:
        method += "; CUPED not applied: no pre_value"
    return Comparison(
        **base,
        difference=plain.difference,
        ci_low=plain.ci_low,
        ci_high=plain.ci_high,
        relative_lift=_lift(plain.difference, mean_c),
        p_value=plain.p_value,
        prob_better=_normal_prob_better(plain.difference, plain.se),
        method=method,
        **cuped,
    )


def srm_check(observed: Mapping[str, int], expected_shares: Mapping[str, float], threshold: float = 0.001) -> SrmCheck:
    """Chi-square goodness of fit of customers per arm against the configured shares.

    Arms with a configured share of 0 are left out of the test, unless they received customers: then the
    assignment is certainly broken (chi2 = inf, p = 0, mismatch).

    Args:
        observed: Customers per arm; arms missing here count as 0.
        expected_shares: Configured share per arm; normalised to sum to 1.
        threshold: Flag a mismatch when the p-value is below this.

    Returns:
        The check.

    Raises:
        ValueError: An observed arm has no configured share, or there are no customers.
    """
    unknown = sorted(set(observed) - set(expected_shares))
    if unknown:
        raise ValueError(f"arms {unknown} received customers but have no expected share")
    total_share = sum(expected_shares.values())
    counts = {arm: int(observed.get(arm, 0)) for arm in expected_shares}
    total = sum(counts.values())
    if total == 0:
        raise ValueError("no customers: the sample ratio cannot be checked")
    expected = {arm: total * share / total_share for arm, share in expected_shares.items()}
    tested = [arm for arm in expected_shares if expected[arm] > 0]
    if any(counts[arm] > 0 for arm in expected_shares if expected[arm] == 0):
        chi2, p_value = math.inf, 0.0
    elif len(tested) < 2:
        # A single arm carries all the traffic: nothing can be mismatched.
        chi2, p_value = 0.0, 1.0
    else:
        res = stats.chisquare([counts[a] for a in tested], f_exp=[expected[a] for a in tested])
        chi2, p_value = float(res.statistic), float(res.pvalue)
    return SrmCheck(
        chi2=chi2,
        p_value=p_value,
        mismatch=p_value < threshold,
        observed=counts,
        expected=expected,
        threshold=threshold,
    )


# --------------------------------------------------------------------------------------------------------------
# the experiment


def analyze(
    units: pd.DataFrame,
    expected_shares: Mapping[str, float],
    control: str,
    alpha: float = 0.05,
    seed: int = 0,
    srm_threshold: float = 0.001,
) -> ExperimentResult:
    """Summarise every arm, compare every other arm with ``control`` and check the sample ratio.

    Args:
        units: One row per customer (see :func:`validate_units`); ``variant`` values must all be arms of
            ``expected_shares``.
        expected_shares: Configured traffic share per arm (a ``"holdout"`` arm included); must sum to 1.
        control: The arm the others are compared with.
        alpha: Significance level; intervals are ``1 - alpha``.
        seed: Seed for the Monte Carlo fallback of the Beta P(better) (only used for huge experiments).
        srm_threshold: SRM p-value threshold.

    Returns:
        Summaries in the order of ``expected_shares``; comparisons for each non-control arm in that order, rate
        first, then value.

    Raises:
        ValueError: Empty ``units`` ("no decisions logged for this experiment ..."), a bad column (named in the
            message), shares not summing to 1, ``control`` not an arm, a variant without a share, or an ``alpha``
            outside (0, 1).
    """
    validate_units(units)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    shares = _check_shares(expected_shares, control)
    variants = units["variant"].astype(str).to_numpy()
    unknown = sorted(set(variants) - set(shares))
    if unknown:
        raise ValueError(f"column variant has arms without an expected share: {unknown}; shares are {sorted(shares)}")

    converted = units["converted"].to_numpy(dtype=int)
    value = units["value"].to_numpy(dtype=float)
    pre_value = units["pre_value"].to_numpy(dtype=float, na_value=np.nan)
    decisions = units["decisions"].to_numpy(dtype=np.int64)
    masks = {arm: variants == arm for arm in shares}
    total = len(units)

    summaries = []
    for arm, mask in masks.items():
        n = int(mask.sum())
        y = value[mask]
        # Values too large to average have no meaningful mean: None (shown as n/a), and the comparison says why.
        averaged = n > 0 and _overflow(y) is None
        summaries.append(
            VariantSummary(
                variant=arm,
                customers=n,
                decisions=int(decisions[mask].sum()),
                conversions=int(converted[mask].sum()),
                outcome_rate=float(converted[mask].mean()) if n else None,
                value_per_customer=float(y.mean()) if averaged else None,
                value_sd=float(y.std(ddof=1)) if averaged and n >= 2 else None,
                expected_share=shares[arm],
                observed_share=n / total,
            )
        )

    comparisons: list[Comparison] = []
    c = masks[control]
    for arm, mask in masks.items():
        if arm == control:
            continue
        comparisons.append(
            compare_rates(
                int(converted[mask].sum()),
                int(mask.sum()),
                int(converted[c].sum()),
                int(c.sum()),
                variant=arm,
                control=control,
                alpha=alpha,
                seed=seed,
            )
        )
        comparisons.append(
            compare_values(
                value[mask],
                value[c],
                variant=arm,
                control=control,
                alpha=alpha,
                pre_v=pre_value[mask],
                pre_c=pre_value[c],
            )
        )

    srm = srm_check({s.variant: s.customers for s in summaries}, shares, threshold=srm_threshold)
    return ExperimentResult(
        variants=tuple(summaries),
        comparisons=tuple(comparisons),
        srm=srm,
        alpha=alpha,
        control=control,
        customers=total,
    )
