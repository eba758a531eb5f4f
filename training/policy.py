"""Doubly robust policy values with 95% intervals, and the choice between a learned policy and one offer for all.

For each logged row ``i`` and each arm ``a`` the doubly robust score is::

    G[i, a] = m(x_i, a) + 1[A_i = a] / mu(a | x_i) * (R_i - m(x_i, a))

with ``R_i`` the logged reward (acceptance or spend times the offer's value, minus its cost; 0 for no offer),
``m`` a reward model fitted on other rows and ``mu`` the logging propensity. The mean of ``G[:, pi(x)]`` estimates
the value of a policy ``pi``; it is unbiased when the propensities are right, whatever ``m`` is, and has a smaller
variance than IPS when ``m`` is good. Paired differences of these scores give intervals for "policy A minus B".
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEARNED = "learned"
BEST_SINGLE = "best_single"


def dr_scores(
    model_reward: np.ndarray, logged_arm: np.ndarray, propensity: np.ndarray, reward: np.ndarray
) -> np.ndarray:
    """Doubly robust reward scores ``G`` of every arm for every row.

    Args:
        model_reward: Predicted reward of each arm per row, shape ``(n, n_arms)``.
        logged_arm: Index of the logged arm per row, shape ``(n,)``.
        propensity: Logging probability of the logged arm per row, in ``(0, 1]``.
        reward: Observed reward of the logged arm per row.

    Returns:
        ``(n, n_arms)`` scores.

    Raises:
        ValueError: a propensity outside ``(0, 1]`` or mismatched shapes.
    """
    m = np.asarray(model_reward, dtype=np.float64)
    a = np.asarray(logged_arm, dtype=np.intp)
    p = np.asarray(propensity, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    if m.ndim != 2 or not (a.shape == p.shape == r.shape == (m.shape[0],)):
        raise ValueError("model_reward must be (n, arms) and logged_arm, propensity, reward (n,)")
    if np.any(~(p > 0.0)) or np.any(p > 1.0):
        raise ValueError("propensity must lie in (0, 1]")
    g = m.copy()
    rows = np.arange(m.shape[0])
    g[rows, a] += (r - m[rows, a]) / p
    return g


@dataclass(frozen=True)
class Estimate:
    """A mean with its two-sided interval."""

    value: float
    low: float
    high: float


def mean_ci(values: np.ndarray, level: float = 0.95) -> Estimate:
    """Mean and normal interval of per-row values (``level`` two-sided)."""
    v = np.asarray(values, dtype=np.float64)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    mean = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("inf")
    return Estimate(mean, mean - z * se, mean + z * se)


def policy_value(scores: np.ndarray, choice: np.ndarray, level: float = 0.95) -> Estimate:
    """Doubly robust value of the policy choosing arm ``choice[i]`` for row ``i``."""
    return mean_ci(scores[np.arange(scores.shape[0]), np.asarray(choice, dtype=np.intp)], level)


@dataclass(frozen=True)
class PolicyChoice:
    """What the selector decided and why.

    Attributes:
        served: ``learned`` or ``best_single``.
        learner: The candidate learner with the highest estimated value.
        best_single: Index of the best single arm on the evaluation rows.
        single_pick: Arm per row of "one offer for all": the best single arm where it is eligible, else the next
            best eligible arm (what a best-single bundle serves).
        gain: That learner's value minus the best single arm's, with an interval at the corrected level.
        level: The interval's level after the Bonferroni correction for the number of candidates.
        reason: One sentence for the bundle metadata and the MLflow run.
    """

    served: str
    learner: str
    best_single: int
    single_pick: np.ndarray
    gain: Estimate
    level: float
    reason: str


def single_offer_picks(scores: np.ndarray, eligible: np.ndarray | None = None) -> np.ndarray:
    """Per row, the arm of "one offer for all": arms ranked once by mean score, each row takes its first eligible.

    Without eligibility every row gets the best arm; with it, a row that may not get the best arm gets the next one
    it may get, as a served best-single bundle does (comparing with an offer some customers may not receive would
    credit the baseline with a policy nobody can run).
    """
    order = np.argsort(-scores.mean(axis=0), kind="stable")
    if eligible is None:
        return np.full(scores.shape[0], order[0], dtype=np.intp)
    ranked = eligible[:, order]
    first = np.argmax(ranked, axis=1)  # the no-offer arm is always eligible; a row with nothing takes the top arm
    return order[first].astype(np.intp)


def choose_policy(
    scores: np.ndarray, candidates: dict[str, np.ndarray], level: float = 0.95, eligible: np.ndarray | None = None
) -> PolicyChoice:
    """Serve the best learned policy only where its interval shows it beats the best single arm.

    The best single arm is the arm with the highest mean score (no offer counts as an arm); the learned policy
    with the highest value is compared with it by the paired difference of the scores. Since the learner is picked
    among several on the same rows, the interval is widened by Bonferroni (level ``1 - (1 - level) / k``).

    Args:
        scores: Doubly robust scores ``(n, n_arms)`` (:func:`dr_scores`) on evaluation rows.
        candidates: Arm index chosen per row by each learned policy.
        level: Two-sided level of the decision interval before the correction.
        eligible: ``(n, n_arms)`` which arms each row may get (None: all); see :func:`single_offer_picks`.

    Returns:
        The decision.
    """
    rows = np.arange(scores.shape[0])
    single = int(np.argmax(scores.mean(axis=0)))
    single_pick = single_offer_picks(scores, eligible)
    values = {name: float(scores[rows, c].mean()) for name, c in candidates.items()}
    best = max(values, key=lambda k: values[k])
    corrected = 1.0 - (1.0 - level) / max(1, len(candidates))
    gain = mean_ci(scores[rows, candidates[best]] - scores[rows, single_pick], corrected)
    if gain.low > 0:
        served = LEARNED
        reason = (
            f"the {best}-learner policy beats the best single offer by {gain.value:.4g} per customer "
            f"({corrected:.1%} interval {gain.low:.4g} to {gain.high:.4g})"
        )
    else:
        served = BEST_SINGLE
        reason = (
            f"the best learned policy ({best}-learner) does not beat the best single offer on the holdout "
            f"(gain {gain.value:.4g} per customer, {corrected:.1%} interval {gain.low:.4g} to {gain.high:.4g}): "
            "one offer for all is served"
        )
    return PolicyChoice(served, best, single, single_pick, gain, corrected, reason)


def average_uplift(offer: np.ndarray, y: np.ndarray, propensity: np.ndarray, control: str) -> dict[str, float]:
    """Self-normalised mean outcome of each offer minus that of the control (the outcome itself without one)."""
    offer = np.asarray(offer).astype(str)
    w = 1.0 / np.asarray(propensity, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)

    def mean(arm: str) -> float:
        m = offer == arm
        return float((w[m] * y[m]).sum() / w[m].sum()) if m.any() else 0.0

    base = mean(control) if (offer == control).any() else 0.0
    return {a: mean(a) - base for a in sorted(set(offer.tolist()) - {control})}
