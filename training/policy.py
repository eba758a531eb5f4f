"""Doubly robust policy values with 95% intervals, and the choice between a learned policy and one offer for all.

A policy's value is what the contract calls value saved: per customer, the uplift its offer causes over no contact,
times the offer's value, minus its cost (0 for no contact). With a control arm it is estimated from the logged
outcomes by doubly robust (augmented IPS) outcome scores per arm::

    D[i, a] = m(x_i, a) + 1[A_i = a] / mu(a | x_i) * (Y_i - m(x_i, a))
    G[i, a] = (D[i, a] - D[i, none]) * value_a - cost_a          (G[i, none] = 0)

with ``Y_i`` the logged outcome (acceptance), ``m`` an outcome model fitted on other rows and ``mu`` the logging
propensity; this is the estimate ``features.policy_value`` gives ``cxpredict target``. The mean of ``G[:, pi(x)]``
estimates the value of a policy ``pi``; it is unbiased when the propensities are right, whatever ``m`` is, and has
a smaller variance than IPS when ``m`` is good. Paired differences of these scores give intervals for "policy A
minus B". Crediting an offer with the outcome itself (acceptance x value - cost, no offer 0) instead would count
the purchases customers make anyway, so a policy that withholds an offer that does not pay would look worse than
one that sends it to everyone. Without a control arm no uplift is identified: the scores are then the outcome's
value minus the cost (the propensity fallback the contract names).
"""

from __future__ import annotations

from collections.abc import Mapping
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


def incremental_scores(
    outcome_model: np.ndarray,
    logged_arm: np.ndarray,
    propensity: np.ndarray,
    outcome: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray,
) -> np.ndarray:
    """Doubly robust value-saved scores ``G``: each offer's uplift over no contact times its value, minus its cost.

    Args:
        outcome_model: Predicted outcome (acceptance) per row under each arm, shape ``(n, 1 + k)``; arm 0 is no
            contact (the control arm).
        logged_arm: Index of the logged arm per row.
        propensity: Logging probability of the logged arm per row, in ``(0, 1]``.
        outcome: Observed outcome of the logged arm per row.
        value: Value of each of the ``k`` offers.
        cost: Cost of each of the ``k`` offers.

    Returns:
        ``(n, 1 + k)`` scores, column 0 (no contact) all zero.
    """
    d = dr_scores(outcome_model, logged_arm, propensity, outcome)
    offers = (d[:, 1:] - d[:, :1]) * np.asarray(value, dtype=np.float64) - np.asarray(cost, dtype=np.float64)
    return np.column_stack([np.zeros(d.shape[0]), offers])


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
        best_single: Index of the arm "one offer for all" gives where it is eligible.
        single_pick: Arm per row of "one offer for all" (what a best-single bundle serves, see
            :func:`choose_policy`).
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
    scores: np.ndarray,
    candidates: dict[str, np.ndarray],
    level: float = 0.95,
    eligible: np.ndarray | None = None,
    single_pick: np.ndarray | None = None,
) -> PolicyChoice:
    """Serve the best learned policy only where its interval shows it beats one offer for all.

    One offer for all is ``single_pick`` when given: the picks of the bundle serving one offer for all, ranked on
    the training rows, so that the comparison is with the policy that would really be served instead (choosing
    the single arm on the evaluation rows themselves would give the baseline a look at the answers). Without it,
    the arm with the highest mean score on these rows (:func:`single_offer_picks`). The learned policy with the
    highest value is compared with it by the paired difference of the scores. Since the learner is picked among
    several on the same rows, the interval is widened by Bonferroni (level ``1 - (1 - level) / k``).

    Args:
        scores: Doubly robust scores ``(n, n_arms)`` (:func:`incremental_scores`) on evaluation rows.
        candidates: Arm index chosen per row by each learned policy.
        level: Two-sided level of the decision interval before the correction.
        eligible: ``(n, n_arms)`` which arms each row may get (None: all); see :func:`single_offer_picks`.
        single_pick: Arm per row of the servable one-offer-for-all policy (None: chosen on these rows).

    Returns:
        The decision.
    """
    rows = np.arange(scores.shape[0])
    if single_pick is None:
        single_pick = single_offer_picks(scores, eligible)
    single_pick = np.asarray(single_pick, dtype=np.intp)
    # The arm the policy gives where it may (the most common pick; ties to the lower index).
    single = int(np.argmax(np.bincount(single_pick, minlength=scores.shape[1])))
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


def average_uplift(
    offer: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    control: str,
    eligible: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Self-normalised mean outcome of each offer minus that of the control (the outcome itself without one).

    Args:
        offer: Logged arm per row.
        y: Observed outcome per row.
        propensity: Logging probability of the logged arm per row.
        control: The control arm's id.
        eligible: Per offer, which rows may get it: its uplift is averaged over those rows only (treated and
            control alike), the customers one offer for all would give it to. None: every row.

    Returns:
        Offer id -> average uplift.
    """
    offer = np.asarray(offer).astype(str)
    w = 1.0 / np.asarray(propensity, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    everyone = np.ones(offer.shape, dtype=bool)

    def mean(arm: str, rows: np.ndarray) -> float:
        m = (offer == arm) & rows
        return float((w[m] * y[m]).sum() / w[m].sum()) if m.any() else 0.0

    out = {}
    for a in sorted(set(offer.tolist()) - {control}):
        rows = np.asarray(eligible[a], dtype=bool) if eligible is not None and a in eligible else everyone
        if not ((offer == a) & rows).any():
            rows = everyone  # no logged row may get it: the overall average is all there is to go on
        if ((offer == control) & rows).any():
            base = mean(control, rows)
        else:  # no control row among them: the control's overall mean (0 without a control arm at all)
            base = mean(control, everyone) if (offer == control).any() else 0.0
        out[a] = mean(a, rows) - base
    return out
