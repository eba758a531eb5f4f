"""Offline helpers only the tests use (kept out of the production packages): an offer ranking and an IPS interval."""

from __future__ import annotations

from statistics import NormalDist
from typing import Literal

import numpy as np

from training.uplift_metrics import _ips_terms


def rank_offers(
    uplift: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
    eligible: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank offers per customer by expected incremental value.

    Expected incremental value is ``uplift * value - cost`` for each (customer, offer);
    ineligible pairs get ``-inf`` so they always sort last.

    Args:
        uplift: Predicted uplift, shape ``(n, n_offers)``.
        value: Value of a conversion, broadcastable to ``(n, n_offers)`` (per offer or per
            customer and offer).
        cost: Cost of making the offer, broadcastable to ``(n, n_offers)``.
        eligible: Boolean eligibility mask, broadcastable to ``(n, n_offers)``.

    Returns:
        ``(order, values)``: ``order[i]`` lists offer column indices for customer ``i``,
        best first (ties broken by lower index); ``values`` is the expected incremental
        value, shape ``(n, n_offers)``, in the original column order.
    """
    uplift = np.asarray(uplift, dtype=np.float64)
    values = uplift * np.asarray(value, dtype=np.float64) - np.asarray(cost, dtype=np.float64)
    values = np.where(np.broadcast_to(np.asarray(eligible, dtype=bool), values.shape), values, -np.inf)
    # Stable sort of the negated values keeps ties in column order, making output deterministic.
    order = np.argsort(-values, axis=1, kind="stable")
    return order, values


def policy_value_ci(
    chosen_offer: np.ndarray | None,
    logged_offer: np.ndarray,
    logged_propensity: np.ndarray,
    reward: np.ndarray,
    *,
    target_propensity: np.ndarray | None = None,
    snips: bool = False,
    method: Literal["normal", "bootstrap"] = "normal",
    level: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Confidence interval for :func:`ips_policy_value`.

    ``normal``: ``estimate +- z * se`` with ``se = std(w * r) / sqrt(n)`` for IPS and the
    delta-method ``se = std(w * (r - SNIPS)) / (mean(w) * sqrt(n))`` for SNIPS.
    ``bootstrap``: percentile interval over ``n_bootstrap`` row resamples (seeded).

    Args:
        chosen_offer: Offer the evaluated policy picks per row.
        logged_offer: Offer actually made.
        logged_propensity: Logging probability of the logged offer.
        reward: Observed reward.
        target_propensity: Optional stochastic-policy probability of the logged offer.
        snips: Use the SNIPS estimator.
        method: ``"normal"`` or ``"bootstrap"``.
        level: Two-sided coverage, 0.95 for a 95% interval.
        n_bootstrap: Number of bootstrap resamples.
        seed: Seed for the bootstrap resampling.

    Returns:
        ``(estimate, low, high)``.

    Raises:
        ValueError: On an unknown method or a level outside ``(0, 1)``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    w, r = _ips_terms(chosen_offer, logged_offer, logged_propensity, reward, target_propensity)
    n = w.size

    def estimate(w_: np.ndarray, r_: np.ndarray) -> float:
        if snips:
            total = w_.sum()
            return float((w_ * r_).sum() / total) if total > 0 else float("nan")
        return float(np.mean(w_ * r_))

    value = estimate(w, r)
    if method == "normal":
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        if snips:
            mean_w = w.mean()
            se = float(np.std(w * (r - value), ddof=1) / (mean_w * np.sqrt(n))) if n > 1 else float("nan")
        else:
            se = float(np.std(w * r, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        return value, value - z * se, value + z * se
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        stats = np.empty(n_bootstrap)
        for b in range(n_bootstrap):
            idx = rng.integers(0, n, size=n)
            stats[b] = estimate(w[idx], r[idx])
        alpha = 1.0 - level
        low, high = np.nanquantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
        return value, float(low), float(high)
    raise ValueError(f"method must be 'normal' or 'bootstrap', got {method!r}")
