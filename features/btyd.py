"""Per-customer BG/NBD answers from fitted parameters: P(alive) and expected purchases (shared by batch and online).

The BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way") is *fitted* in
:mod:`training.btyd`; this module only *evaluates* it for one customer's summary (frequency ``x`` = repeat purchase
days, recency ``t_x`` = first to last purchase day, age ``T`` = first purchase day to the cut-off), so that serving
can answer ``p_alive`` and ``expected_orders`` without importing training code. Times are in the same units as the
fitted parameters (``BGParams.time_unit_days`` days per unit).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.integrate import IntegrationWarning, quad
from scipy.special import betaln, expit, hyp2f1

FloatArray = npt.NDArray[np.float64]

#: A fit whose P(alive) is at least this for every customer it saw says nothing about who is still active (on
#: online retail the dropout probability runs to 0): the answers then fall back (see :mod:`features.scoring`).
DEGENERATE_P_ALIVE = 0.99


@dataclass(frozen=True)
class BGParams:
    """Fitted BG/NBD parameters: purchase rate ``lambda ~ Gamma(r, alpha)``, dropout ``p ~ Beta(a, b)``.

    Attributes:
        r: Gamma shape.
        alpha: Gamma rate (in time units).
        a: Beta first shape.
        b: Beta second shape.
        time_unit_days: Days per time unit the parameters were fitted in.
    """

    r: float
    alpha: float
    a: float
    b: float
    time_unit_days: float = 7.0

    def to_json(self) -> dict[str, float]:
        """Serialisable form (stored in the CLTV bundle's metadata)."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b, "time_unit_days": self.time_unit_days}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BGParams:
        """Inverse of :meth:`to_json`."""
        return cls(**{k: float(data[k]) for k in ("r", "alpha", "a", "b", "time_unit_days")})


@dataclass(frozen=True)
class GGParams:
    """Fitted Gamma-Gamma parameters (Fader, Hardie & Lee 2005, "RFM and CLV").

    The spend of a purchase is ``z ~ Gamma(p, nu)`` around a customer's rate ``nu ~ Gamma(q, v)``; the population's
    mean spend per purchase is ``p v / (q - 1)``.

    Attributes:
        p: Shape of a purchase's spend.
        q: Shape of the customers' rates.
        v: Rate parameter of the customers' rates.
    """

    p: float
    q: float
    v: float

    def to_json(self) -> dict[str, float]:
        """Serialisable form (stored in bundle metadata)."""
        return {"p": self.p, "q": self.q, "v": self.v}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GGParams:
        """Inverse of :meth:`to_json`."""
        return cls(**{k: float(data[k]) for k in ("p", "q", "v")})

    def expected_average(self, frequency: FloatArray, mean_value: FloatArray) -> FloatArray:
        """Conditional expected spend per future purchase.

        A precision-weighted mix of the population mean ``p v / (q - 1)`` and the customer's own mean ``m`` over
        ``x`` purchases: ``(p v + p x m) / (p x + q - 1)``. Where ``x`` is 0 or missing, or ``m`` is not positive,
        it is the population mean (NaN when ``q <= 1``, where that mean is infinite).
        """
        x = np.asarray(frequency, dtype=np.float64)
        m = np.asarray(mean_value, dtype=np.float64)
        known = np.isfinite(x) & np.isfinite(m) & (x > 0) & (m > 0)
        population = self.p * self.v / (self.q - 1.0) if self.q > 1.0 else math.nan
        xs, ms = np.where(known, x, 0.0), np.where(known, m, 0.0)
        conditional = (self.p * self.v + self.p * xs * ms) / (self.p * xs + self.q - 1.0)
        return np.where(known, conditional, population)


def log_dropout_odds(params: BGParams, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
    """Log of P(dropped out right after the last purchase) / P(alive); -inf when ``x == 0``."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    bx1 = np.where(repeat, b + x - 1.0, 1.0)
    odds = np.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + big_t) - np.log(alpha + tx))
    return np.where(repeat, odds, -np.inf)


def p_alive(params: BGParams, x: FloatArray, tx: FloatArray, big_t: FloatArray) -> FloatArray:
    """Probability that each customer is still alive at ``T``.

    Exactly 1 when ``x == 0``: BG/NBD customers drop out only right after a purchase.
    """
    return expit(-log_dropout_odds(params, x, tx, big_t))


def expected_purchases(
    params: BGParams,
    t: FloatArray,
    x: FloatArray,
    tx: FloatArray,
    big_t: FloatArray,
    alive: FloatArray | None = None,
) -> FloatArray:
    """Conditional expected purchases in the next ``t`` time units (equation 10 of Fader, Hardie & Lee 2005).

    The Gaussian hypergeometric term is evaluated after Euler's transformation (stable for frequent buyers); where
    ``hyp2f1`` breaks down (``a`` near 1, parameters at their bounds) the same expectation comes from quadrature.
    ``alive`` is :func:`p_alive` of the same customers when the caller has it already.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    horizon = np.broadcast_to(np.asarray(t, dtype=float), x.shape)
    z = horizon / (alpha + big_t + horizon)
    with np.errstate(divide="ignore", invalid="ignore"):
        hyp_term = (1.0 - z) ** (a - 1.0) * hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
        numerator = np.asarray((a + b + x - 1.0) / (a - 1.0) * (1.0 - hyp_term), dtype=float)
    # At a == 1 the closed form is 0/0 and close to it cancels, so those go to quadrature too.
    bad = ~np.isfinite(numerator) | (abs(a - 1.0) < 1e-6)
    if bad.any():
        numerator = numerator.copy()
        numerator[bad] = _alive_purchases_by_quadrature(params, horizon[bad], x[bad], big_t[bad])
    return numerator * (p_alive(params, x, tx, big_t) if alive is None else alive)


def _alive_purchases_by_quadrature(params: BGParams, t: FloatArray, x: FloatArray, big_t: FloatArray) -> FloatArray:
    """Expected purchases in ``t`` for a customer known to be alive, by 1-d quadrature.

    Given alive, lambda ~ Gamma(r+x, alpha+T) and p ~ Beta(a, b+x); integrating lambda out of
    ``(1 - exp(-lambda p t)) / p`` leaves ``g(p) = (1 - (1 + p s)^-(r+x)) / p`` with ``s = t / (alpha+T)``, whose
    mean under the Beta is wanted.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    out = np.empty_like(t)
    cache: dict[tuple[float, float, float], float] = {}
    for i, key in enumerate(zip(t.tolist(), x.tolist(), big_t.tolist(), strict=True)):
        if key not in cache:
            ti, xi, ti_big = key
            k, scale = r + xi, ti / (alpha + ti_big)
            g0 = k * scale  # g's limit at p = 0

            def slope(p: float, k: float = k, scale: float = scale, g0: float = g0) -> float:
                u = p * scale
                if (k + 2.0) * u < 1e-3:
                    # Near p = 0 the direct form cancels catastrophically; use its series.
                    return scale * scale * k * (k + 1.0) * (-0.5 + (k + 2.0) * u / 6.0)
                return (-np.expm1(-k * np.log1p(u)) / p - g0) / p

            # E[g] = g(0) + E[p * slope(p)]: taking g(0) out leaves the integrable p^a (1-p)^(b+x-1).
            c = b + xi
            log_norm = betaln(a, c)

            def weighted(p: float, c: float = c, log_norm: float = log_norm, slope: Any = slope) -> float:
                if p <= 0.0 or p >= 1.0:
                    return 0.0
                return slope(p) * np.exp(a * np.log(p) + (c - 1.0) * np.log1p(-p) - log_norm)

            # The Beta's mass sits within a few (a+1)/c of 0; telling quad so avoids missing a narrow spike.
            edge = min(0.5, 30.0 * (a + 1.0) / c)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", IntegrationWarning)
                rest = sum(
                    quad(weighted, lo, hi, limit=200, epsabs=1e-10 * g0)[0] for lo, hi in ((0.0, edge), (edge, 1.0))
                )
            cache[key] = g0 + rest
        out[i] = cache[key]
    return out


def _summary_in_units(
    params: BGParams, frequency: FloatArray, recency_days: FloatArray, age_days: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, np.ndarray]:
    """``x``, ``t_x`` and ``T`` in the parameters' time unit, and which rows are a valid BG/NBD summary."""
    x = np.asarray(frequency, dtype=float)
    tx = np.asarray(recency_days, dtype=float) / params.time_unit_days
    big_t = np.asarray(age_days, dtype=float) / params.time_unit_days
    ok = np.isfinite(x) & np.isfinite(tx) & np.isfinite(big_t) & (x >= 0) & (tx >= 0) & (tx <= big_t + 1e-9)
    return x, tx, big_t, ok


def customer_answers(
    params: BGParams, horizon_days: float, frequency: FloatArray, recency_days: FloatArray, age_days: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """P(alive) and expected purchases over ``horizon_days`` from the feature table's BG/NBD summary (in days).

    Rows without a purchase (NaN summary) get NaN: BG/NBD describes a customer from their first purchase on.

    Args:
        params: Fitted parameters.
        horizon_days: Horizon of the expected purchases.
        frequency: ``bg_frequency`` (repeat purchase days).
        recency_days: ``bg_recency_days``.
        age_days: ``bg_age_days``.
    """
    x, tx, big_t, ok = _summary_in_units(params, frequency, recency_days, age_days)
    alive = np.full(x.shape, math.nan)
    orders = np.full(x.shape, math.nan)
    if ok.any():
        alive[ok] = p_alive(params, x[ok], tx[ok], big_t[ok])
        t = np.full(int(ok.sum()), horizon_days / params.time_unit_days)
        orders[ok] = expected_purchases(params, t, x[ok], tx[ok], big_t[ok], alive[ok])
    return alive, orders


def no_purchase_probability(
    params: BGParams, horizon_days: float, frequency: FloatArray, recency_days: FloatArray, age_days: FloatArray
) -> FloatArray:
    """P(no purchase over ``horizon_days``) from the feature table's BG/NBD summary (in days): BG/NBD's churn.

    ``1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x)``: a customer alive at ``T`` buys at a
    rate whose posterior is ``Gamma(r + x, alpha + T)`` (Fader, Hardie & Lee 2005), so no purchase in ``t`` is that
    negative binomial's zero. NaN where :func:`customer_answers` gives NaN.
    """
    x, tx, big_t, ok = _summary_in_units(params, frequency, recency_days, age_days)
    out = np.full(x.shape, math.nan)
    if ok.any():
        alive = p_alive(params, x[ok], tx[ok], big_t[ok])
        t = horizon_days / params.time_unit_days
        quiet = np.exp((params.r + x[ok]) * (np.log(params.alpha + big_t[ok]) - np.log(params.alpha + big_t[ok] + t)))
        out[ok] = 1.0 - alive + alive * quiet
    return out
