"""Offline evaluation metrics for uplift models and offer policies.

Curve metrics (Qini, uplift curve) evaluate a score on randomized treated/control data;
policy-value estimators (IPS, SNIPS) evaluate an offer-assignment policy on logged data
whose per-row logging propensities are known.

Conventions shared by the curve metrics:

* Rows are sorted by ``uplift_score`` descending with a stable sort, so tied scores keep
  their input order; the curves are evaluated after every row (``k = 0 .. n``).
* ``fraction`` is ``k / n``; areas are trapezoidal over ``fraction`` in ``[0, 1]`` and
  are then divided by ``n`` so they read as "incremental outcome per customer" and are
  comparable across data sets of different size.
"""

from __future__ import annotations

import numpy as np


def _sorted_cumulative(
    uplift_score: np.ndarray, treated: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``fraction, N_t(k), N_c(k), Y_t(k), Y_c(k)`` for ``k = 0 .. n``."""
    score = np.asarray(uplift_score, dtype=np.float64)
    t = np.asarray(treated, dtype=bool)
    y = np.asarray(y, dtype=np.float64)
    if not (score.ndim == 1 and score.shape == t.shape == y.shape):
        raise ValueError("uplift_score, treated and y must be 1-D arrays of equal length")
    if score.size == 0:
        raise ValueError("empty input")
    order = np.argsort(-score, kind="stable")
    t, y = t[order], y[order]
    zero = np.zeros(1)
    n_t = np.concatenate([zero, np.cumsum(t)])
    n_c = np.concatenate([zero, np.cumsum(~t)])
    y_t = np.concatenate([zero, np.cumsum(y * t)])
    y_c = np.concatenate([zero, np.cumsum(y * ~t)])
    fraction = np.arange(score.size + 1) / score.size
    return fraction, n_t, n_c, y_t, y_c


def qini_curve(uplift_score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radcliffe's Qini curve.

    For the population sorted by score descending, at each cut ``k``::

        qini(k) = Y_t(k) - Y_c(k) * N_t(k) / N_c(k)

    where ``Y_t(k)``/``Y_c(k)`` are the summed outcomes and ``N_t(k)``/``N_c(k)`` the
    counts of treated/control rows among the top ``k``. Where ``N_c(k) == 0`` the
    control term is taken as 0. It is the number of incremental outcomes gained by
    treating the top ``k``, with the control outcome rescaled to the treated count.

    Args:
        uplift_score: Model score, higher means treat first, shape ``(n,)``.
        treated: Whether each row was treated, shape ``(n,)``.
        y: Observed outcome, shape ``(n,)``.

    Returns:
        ``(fraction, qini)``, both shape ``(n + 1,)``, starting at ``(0, 0)``.
    """
    fraction, n_t, n_c, y_t, y_c = _sorted_cumulative(uplift_score, treated, y)
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c > 0)
    return fraction, y_t - y_c * ratio


def qini_coefficient(uplift_score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> float:
    """Area between the Qini curve and the random-targeting line, per row.

    Definition::

        Q = (integral_0^1 qini(f) df - qini(n) / 2) / n

    i.e. the trapezoidal area under the Qini curve over ``fraction`` minus the area under
    the straight line from ``(0, 0)`` to ``(1, qini(n))`` (random targeting), divided by
    the number of rows ``n``. It is NOT normalised by the perfect-model area, so its unit
    is incremental outcome per customer: positive means better than random, 0 random.

    Args:
        uplift_score: Model score, shape ``(n,)``.
        treated: Treatment indicator, shape ``(n,)``.
        y: Observed outcome, shape ``(n,)``.

    Returns:
        The Qini coefficient.
    """
    fraction, qini = qini_curve(uplift_score, treated, y)
    area = float(np.trapezoid(qini, fraction))
    return (area - float(qini[-1]) / 2.0) / (fraction.size - 1)


def uplift_curve(uplift_score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: estimated incremental outcome from treating the top ``k``.

    At each cut ``k`` of the population sorted by score descending::

        u(k) = (Y_t(k) / N_t(k) - Y_c(k) / N_c(k)) * k

    and ``u(k) = 0`` while either group is still empty in the top ``k``.

    Args:
        uplift_score: Model score, shape ``(n,)``.
        treated: Treatment indicator, shape ``(n,)``.
        y: Observed outcome, shape ``(n,)``.

    Returns:
        ``(fraction, uplift)``, both shape ``(n + 1,)``.
    """
    fraction, n_t, n_c, y_t, y_c = _sorted_cumulative(uplift_score, treated, y)
    both = (n_t > 0) & (n_c > 0)
    mean_t = np.divide(y_t, n_t, out=np.zeros_like(y_t), where=both)
    mean_c = np.divide(y_c, n_c, out=np.zeros_like(y_c), where=both)
    k = np.arange(fraction.size, dtype=np.float64)
    return fraction, (mean_t - mean_c) * k


def auuc(uplift_score: np.ndarray, treated: np.ndarray, y: np.ndarray) -> float:
    """Area under the uplift curve, per row.

    Definition::

        AUUC = integral_0^1 u(f) df / n

    with ``u`` from :func:`uplift_curve` (trapezoidal over ``fraction``). The random
    baseline is NOT subtracted; for a random score it is about ``ATE / 2``.

    Args:
        uplift_score: Model score, shape ``(n,)``.
        treated: Treatment indicator, shape ``(n,)``.
        y: Observed outcome, shape ``(n,)``.

    Returns:
        The AUUC.
    """
    fraction, curve = uplift_curve(uplift_score, treated, y)
    return float(np.trapezoid(curve, fraction)) / (fraction.size - 1)


def uplift_at_k(uplift_score: np.ndarray, treated: np.ndarray, y: np.ndarray, k: float = 0.3) -> float:
    """Observed uplift among the top-``k`` fraction by score.

    Definition: take the ``m = round(k * n)`` (at least 1) highest-scoring rows (stable
    order on ties) and return ``mean(y | treated) - mean(y | control)`` within them.

    Args:
        uplift_score: Model score, shape ``(n,)``.
        treated: Treatment indicator, shape ``(n,)``.
        y: Observed outcome, shape ``(n,)``.
        k: Fraction of the population to keep, in ``(0, 1]``.

    Returns:
        The uplift, or NaN if the top ``k`` has no treated or no control row.

    Raises:
        ValueError: If ``k`` is outside ``(0, 1]``.
    """
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    _, n_t, n_c, y_t, y_c = _sorted_cumulative(uplift_score, treated, y)
    n = n_t.size - 1
    m = min(n, max(1, round(k * n)))
    if n_t[m] == 0 or n_c[m] == 0:
        return float("nan")
    return float(y_t[m] / n_t[m] - y_c[m] / n_c[m])


def _ips_terms(
    chosen_offer: np.ndarray | None,
    logged_offer: np.ndarray,
    logged_propensity: np.ndarray,
    reward: np.ndarray,
    target_propensity: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-row importance weights ``w`` and rewards ``r``."""
    logged = np.asarray(logged_offer)
    p = np.asarray(logged_propensity, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    if not (logged.ndim == 1 and logged.shape == p.shape == r.shape):
        raise ValueError("logged_offer, logged_propensity and reward must be 1-D of equal length")
    if logged.size == 0:
        raise ValueError("empty input")
    if np.any(~(p > 0.0)) or np.any(p > 1.0):
        raise ValueError("logged_propensity must lie in (0, 1]")
    if target_propensity is not None:
        pi = np.asarray(target_propensity, dtype=np.float64)
        if pi.shape != p.shape:
            raise ValueError("target_propensity must have one entry per row")
    else:
        if chosen_offer is None:
            raise ValueError("give chosen_offer or target_propensity")
        chosen = np.asarray(chosen_offer)
        if chosen.shape != logged.shape:
            raise ValueError("chosen_offer must have one entry per row")
        pi = (chosen == logged).astype(np.float64)
    return pi / p, r


def ips_policy_value(
    chosen_offer: np.ndarray | None,
    logged_offer: np.ndarray,
    logged_propensity: np.ndarray,
    reward: np.ndarray,
    *,
    target_propensity: np.ndarray | None = None,
    snips: bool = False,
) -> float:
    """Inverse-propensity estimate of the mean reward per customer under a policy.

    With importance weight ``w_i = pi(a_i | x_i) / mu(a_i | x_i)``, where ``a_i`` is the
    logged offer, ``mu`` the logging propensity and ``pi`` the evaluated policy
    (``pi = 1[chosen_i == a_i]`` for a deterministic policy)::

        IPS   = (1 / n) * sum_i w_i * r_i
        SNIPS = sum_i w_i * r_i / sum_i w_i

    IPS is unbiased when every offer the policy chooses had positive logging
    probability; SNIPS trades a small bias for much lower variance.

    Args:
        chosen_offer: Offer the evaluated deterministic policy picks per row, shape
            ``(n,)``; ignored when ``target_propensity`` is given.
        logged_offer: Offer actually made, shape ``(n,)``.
        logged_propensity: Probability the logging policy gave to the logged offer.
        reward: Observed reward per row.
        target_propensity: For a stochastic policy, its probability of the logged offer
            per row. Passing ``logged_propensity`` evaluates the logging policy itself,
            which returns the observed mean reward.
        snips: Return the self-normalised (SNIPS) estimate instead of IPS.

    Returns:
        The estimated policy value (NaN for SNIPS if no row matches the policy).
    """
    w, r = _ips_terms(chosen_offer, logged_offer, logged_propensity, reward, target_propensity)
    if snips:
        total = w.sum()
        return float((w * r).sum() / total) if total > 0 else float("nan")
    return float(np.mean(w * r))


def snips_policy_value(
    chosen_offer: np.ndarray | None,
    logged_offer: np.ndarray,
    logged_propensity: np.ndarray,
    reward: np.ndarray,
    *,
    target_propensity: np.ndarray | None = None,
) -> float:
    """Self-normalised IPS; see :func:`ips_policy_value` with ``snips=True``.

    Args:
        chosen_offer: Offer the evaluated policy picks per row.
        logged_offer: Offer actually made.
        logged_propensity: Logging probability of the logged offer.
        reward: Observed reward.
        target_propensity: Optional stochastic-policy probability of the logged offer.

    Returns:
        The SNIPS estimate.
    """
    return ips_policy_value(
        chosen_offer,
        logged_offer,
        logged_propensity,
        reward,
        target_propensity=target_propensity,
        snips=True,
    )
