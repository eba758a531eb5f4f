"""Doubly robust value of an offer-targeting policy from logged, randomised offers (pure numpy).

Shared by ``cxpredict target`` (its baselines) and the benchmarks. A policy assigns each logged customer either an
offer or no contact. Its incremental value over contacting nobody, per logged customer, is estimated with the
doubly robust (augmented IPS) estimate of each arm's outcome::

    DR_a(i) = mu(x_i, a) + 1[A_i = a] / p_i * (y_i - mu(x_i, a))
    term_i  = (DR_a(i) - DR_0(i)) * value_a - cost_a    if the policy contacts i with offer a, else 0

where ``mu`` is the outcome model (acceptance probability per arm), ``A_i`` the logged arm, ``p_i`` its logging
propensity and ``0`` the control arm. Unbiased when either the propensities or the outcome model are right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from features.scoring import Bundle


@dataclass(frozen=True)
class Estimate:
    """A mean with its two-sided interval.

    Attributes:
        value: Point estimate.
        low: Lower bound.
        high: Upper bound.
    """

    value: float
    low: float
    high: float

    def scaled(self, factor: float) -> Estimate:
        """The same estimate times ``factor`` (for totals from means)."""
        bounds = sorted((self.low * factor, self.high * factor))
        return Estimate(self.value * factor, bounds[0], bounds[1])


def mean_interval(terms: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean of per-row terms with a normal interval (``z * sd / sqrt(n)``)."""
    terms = np.asarray(terms, dtype=np.float64)
    if terms.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    mean = float(terms.mean())
    if terms.size < 2:
        return Estimate(mean, float("nan"), float("nan"))
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    half = z * float(terms.std(ddof=1)) / np.sqrt(terms.size)
    return Estimate(mean, mean - half, mean + half)


def dr_arm_outcomes(
    logged: Sequence[str], propensity: np.ndarray, y: np.ndarray, mu: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Doubly robust outcome per row under each arm of ``mu`` (the control included).

    Args:
        logged: Arm logged per row.
        propensity: Logging probability of the logged arm, in (0, 1].
        y: Observed outcome per row.
        mu: Model outcome per row for each arm.

    Raises:
        ValueError: lengths differ or a propensity is outside (0, 1].
    """
    logged_arr = np.asarray(logged, dtype=object)
    p = np.asarray(propensity, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not (logged_arr.shape == p.shape == y.shape):
        raise ValueError("logged, propensity and y must have one entry per row")
    if np.any(~(p > 0)) or np.any(p > 1):
        raise ValueError("propensity must lie in (0, 1]")
    out = {}
    for arm, m in mu.items():
        m = np.asarray(m, dtype=np.float64)
        if m.shape != y.shape:
            raise ValueError(f"mu[{arm!r}] must have one entry per row")
        out[arm] = m + (logged_arr == arm) / p * (y - m)
    return out


def dr_policy_terms(
    chosen: Sequence[str | None],
    dr: Mapping[str, np.ndarray],
    value: Mapping[str, float],
    cost: Mapping[str, float],
    control: str = "none",
) -> np.ndarray:
    """Per-row incremental value of a policy (``chosen[i]`` an offer, or None for no contact) over no contact."""
    base = dr[control]
    terms = np.zeros(base.shape, dtype=np.float64)
    for i, offer in enumerate(chosen):
        if offer is None or offer == control:
            continue
        terms[i] = (dr[offer][i] - base[i]) * float(value[offer]) - float(cost[offer])
    return terms


def offer_outcomes(bundle: Bundle, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A next-best-offer bundle's outcome without an offer ``(n,)`` and each offer's uplift ``(n, k)`` per row.

    The one place this package reads the bundle's per-customer uplift (training's policy values, ``target``).
    """
    return bundle._offer_outcomes(x)
