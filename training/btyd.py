"""Buy-'til-you-die (BTYD) baselines: BG/NBD for purchase counts, Gamma-Gamma for spend.

Both models are fitted by maximum likelihood with :func:`scipy.optimize.minimize`
(L-BFGS-B on the log of the parameters, with analytic gradients), so the project does
not depend on ``lifetimes`` or ``pymc``. The likelihoods and conditional expectations
follow Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative
to the Pareto/NBD Model" and "RFM and CLV: Using Iso-Value Curves for Customer Base
Analysis", together with Fader & Hardie's note "The Gamma-Gamma Model of Monetary Value".

The expected models work on an RFM summary (see :func:`rfm_summary`) in which time is
measured in "units" of ``time_unit_days`` days (a week by default).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, logsumexp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from features import btyd as core
from features.btyd import BGParams, GGParams

__all__ = ["BTYDModel", "BetaGeoFitter", "GammaGammaFitter", "rfm_summary"]

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

_SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value")
# Log-parameters are boxed so that a wandering line search cannot overflow exp(); the
# range (about 3e-7 .. 3e6) is far wider than any sensible r, alpha, a, b, p, q or v.
_LOG_BOUND = 15.0
_DAYS_PER_MONTH = 365.25 / 12.0


def rfm_summary(transactions: pd.DataFrame, as_of: pd.Timestamp, time_unit_days: float = 7.0) -> pd.DataFrame:
    """Summarise a transaction log into the frequency/recency/T/monetary table of BTYD models.

    Only purchases (``amount > 0``) strictly before ``as_of`` are used, and all purchases
    of a customer on the same calendar day count as one purchase, because BG/NBD models
    purchase occasions rather than order lines. Returns (``amount <= 0``) never create or
    remove a purchase occasion and are left out of the spend as well: Gamma-Gamma needs a
    strictly positive value per occasion and a return usually refers to an earlier day.

    Args:
        transactions: One row per transaction line with columns ``customer_id``, ``ts``
            (datetime-like) and ``amount``.
        as_of: Cut-off; rows at or after it are ignored and ``T`` is measured up to it.
        time_unit_days: Length of one time unit in days (7 gives weeks).

    Returns:
        A frame indexed by ``customer_id`` with float columns ``frequency`` (distinct
        purchase days minus one), ``recency`` (first to last purchase day), ``T`` (first
        purchase day to ``as_of``) and ``monetary_value`` (mean spend per repeat purchase
        day, i.e. excluding the first day; 0 when ``frequency`` is 0). Customers without
        a purchase before ``as_of`` are absent.

    Raises:
        ValueError: If a required column is missing or ``time_unit_days`` is not positive.
    """
    missing = {"customer_id", "ts", "amount"} - set(transactions.columns)
    if missing:
        raise ValueError(f"rfm_summary: transactions lack column(s) {sorted(missing)}")
    if not time_unit_days > 0:
        raise ValueError(f"rfm_summary: time_unit_days must be positive, got {time_unit_days}")

    ts = pd.to_datetime(transactions["ts"])
    cutoff = pd.Timestamp(as_of)
    # Comparing tz-aware with naive timestamps raises, so read a naive cut-off in the log's zone.
    tz = getattr(ts.dt, "tz", None)
    if tz is not None and cutoff.tzinfo is None:
        cutoff = cutoff.tz_localize(tz)

    amount = pd.to_numeric(transactions["amount"])
    keep = (amount > 0).to_numpy() & (ts < cutoff).to_numpy()
    buys = pd.DataFrame({"customer_id": transactions["customer_id"].to_numpy()[keep], "day": ts[keep].dt.normalize()})
    buys["amount"] = amount.to_numpy(dtype=float)[keep]
    if buys.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in _SUMMARY_COLUMNS})
        empty.index.name = "customer_id"
        return empty

    daily = buys.groupby(["customer_id", "day"], sort=True)["amount"].sum().reset_index()
    grouped = daily.groupby("customer_id", sort=True)
    first = grouped["day"].min()
    last = grouped["day"].max()
    n_days = grouped["day"].size()
    total = grouped["amount"].sum()
    # The first purchase is excluded from the spend because it is what makes a customer
    # appear at all; Gamma-Gamma is defined on repeat purchases only.
    first_amount = daily.groupby("customer_id", sort=True)["amount"].first()

    unit = pd.Timedelta(days=time_unit_days)
    frequency = (n_days - 1).astype(float)
    repeat_spend = total - first_amount
    summary = pd.DataFrame(
        {
            "frequency": frequency,
            "recency": (last - first) / unit,
            "T": (cutoff - first) / unit,
            "monetary_value": np.where(frequency > 0, repeat_spend / frequency.where(frequency > 0, 1.0), 0.0),
        }
    )
    summary.index.name = "customer_id"
    return summary.astype(float)


def _as_float_arrays(**arrays: ArrayLike) -> dict[str, FloatArray]:
    """Convert equally long 1-d array-likes to float arrays, checking they are finite."""
    out = {name: np.atleast_1d(np.asarray(a, dtype=float)).ravel() for name, a in arrays.items()}
    lengths = {name: a.size for name, a in out.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")
    for name, a in out.items():
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return out


def _check_rft(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate BG/NBD inputs and return them as float arrays."""
    arr = _as_float_arrays(frequency=frequency, recency=recency, T=T)
    x, tx, big_t = arr["frequency"], arr["recency"], arr["T"]
    if np.any(x < 0):
        raise ValueError("frequency must be non-negative")
    if np.any(tx < 0) or np.any(tx > big_t + 1e-9):
        raise ValueError("recency must satisfy 0 <= recency <= T")
    return x, tx, big_t


def _fit_log_params(
    objective: Callable[[FloatArray], tuple[float, FloatArray]], x0: FloatArray, model: str
) -> FloatArray:
    """Minimise ``objective`` over log-parameters with L-BFGS-B and fail loudly if it does not converge."""
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * x0.size
    res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000})
    if not res.success:
        # L-BFGS-B sometimes stops with a line-search complaint right at the optimum, where
        # the rounding noise of the objective swamps the decrease it asks for; a restart from
        # there resolves that case, and anything that still fails is reported.
        res = minimize(objective, res.x, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000})
    if not res.success or not np.all(np.isfinite(res.x)) or not np.isfinite(res.fun):
        raise ValueError(f"{model} fit did not converge: {res.message}")
    # A parameter pinned to the box means the likelihood kept improving towards 0 or
    # infinity. The limit is still a usable model (e.g. a -> 0 is "nobody drops out"), so
    # this warns instead of failing, but the parameter itself should not be interpreted.
    if np.any(np.abs(res.x) >= _LOG_BOUND - 1e-6):
        warnings.warn(
            f"{model}: a parameter ran to its bound (log-params {np.round(res.x, 2)}); the data do not "
            "identify the model there, so read the estimates as a limit; a penalizer or more customers may help",
            ConvergenceWarning,
            stacklevel=3,
        )
    return np.asarray(res.x, dtype=float)


class BetaGeoFitter(BaseEstimator):
    """BG/NBD model of repeat purchasing (Fader, Hardie & Lee 2005).

    While alive a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``
    (shape, rate); after every purchase they drop out for good with probability
    ``p ~ Beta(a, b)``.

    Args:
        penalizer: L2 penalty on the (natural-scale) parameters, added to the mean negative
            log-likelihood; a small value (e.g. 0.001-0.1) stabilises fits on little data.

    Attributes:
        params_: Fitted ``{"r", "alpha", "a", "b"}``.
        log_likelihood_: Total log-likelihood of the training data at ``params_``.
        n_customers_: Number of customers the model was fitted on.
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    @staticmethod
    def _log_likelihood(
        log_params: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-customer log-likelihood and its gradient w.r.t. the log-parameters.

        Returns:
            ``(ll, grad)`` with shapes ``(n,)`` and ``(n, 4)``.
        """
        r, alpha, a, b = np.exp(log_params)
        repeat = x > 0
        # ln A3 = -(r+x) ln(alpha+T) is the "still alive at T" branch; ln A4 is the "dropped
        # out right after the last purchase" branch, which only exists once x > 0. Adding
        # them in log space keeps heavy buyers from underflowing.
        log_at = np.log(alpha + big_t)
        log_atx = np.log(alpha + tx)
        ln_a3 = -(r + x) * log_at
        # b + x - 1 > 0 whenever x >= 1; the placeholder for x == 0 is masked out below.
        bx1 = np.where(repeat, b + x - 1.0, 1.0)
        ln_a4 = np.where(repeat, np.log(a) - np.log(bx1) - (r + x) * log_atx, -np.inf)
        tail = logsumexp(np.stack([ln_a3, ln_a4]), axis=0)
        ll = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b) + tail

        w4 = np.exp(ln_a4 - tail)  # 0 when x == 0
        w3 = 1.0 - w4
        d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w3 * log_at - w4 * log_atx
        d_alpha = r / alpha - (r + x) * (w3 / (alpha + big_t) + w4 / (alpha + tx))
        psi_ab = digamma(a + b)
        psi_abx = digamma(a + b + x)
        d_a = psi_ab - psi_abx + w4 / a
        d_b = digamma(b + x) - digamma(b) + psi_ab - psi_abx - w4 / bx1
        # Chain rule for theta = log(param): d/d theta = param * d/d param.
        grad = np.column_stack([r * d_r, alpha * d_alpha, a * d_a, b * d_b])
        return ll, grad

    def _objective(
        self, log_params: FloatArray, x: FloatArray, tx: FloatArray, big_t: FloatArray
    ) -> tuple[float, FloatArray]:
        """Mean negative log-likelihood plus penalty, and its gradient."""
        ll, grad = self._log_likelihood(log_params, x, tx, big_t)
        params = np.exp(log_params)
        value = -ll.mean() + self.penalizer * np.sum(params**2)
        gradient = -grad.mean(axis=0) + 2.0 * self.penalizer * params**2
        if not np.isfinite(value):
            # A non-finite value makes L-BFGS-B's line search back off instead of crashing.
            return np.inf, np.zeros_like(log_params)
        return float(value), gradient

    def fit(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BetaGeoFitter:
        """Fit the BG/NBD parameters by maximum likelihood.

        Args:
            frequency: Number of repeat purchases per customer.
            recency: Time of the last purchase since the first, in model time units.
            T: Time from the first purchase to the end of observation, in model time units.

        Returns:
            The fitted estimator.

        Raises:
            ValueError: On empty or invalid input, or if the optimiser does not converge.
        """
        x, tx, big_t = _check_rft(frequency, recency, T)
        if x.size == 0:
            raise ValueError("BetaGeoFitter.fit: no customers to fit on")
        if self.penalizer < 0:
            raise ValueError(f"BetaGeoFitter: penalizer must be >= 0, got {self.penalizer}")
        # Start alpha on the time scale of the data (E[lambda] = r/alpha ~ purchases per
        # unit); starting at 1 would leave the optimiser far away when units are days.
        rate = max(x.sum(), 1.0) / max(big_t.sum(), 1e-9)
        x0 = np.log(np.array([1.0, 1.0 / rate, 1.0, 1.0]))
        x0 = np.clip(x0, -_LOG_BOUND + 1.0, _LOG_BOUND - 1.0)
        log_params = _fit_log_params(lambda th: self._objective(th, x, tx, big_t), x0, "BetaGeoFitter")
        r, alpha, a, b = np.exp(log_params)
        self.params_ = {"r": float(r), "alpha": float(alpha), "a": float(a), "b": float(b)}
        self.log_likelihood_ = float(self._log_likelihood(log_params, x, tx, big_t)[0].sum())
        self.n_customers_ = int(x.size)
        return self

    def _fitted_params(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise ValueError("BetaGeoFitter is not fitted yet; call fit() first")
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def _core_params(self) -> BGParams:
        r, alpha, a, b = self._fitted_params()
        # Time units are whatever the fit saw; the per-customer formulas do not depend on their length.
        return BGParams(r=r, alpha=alpha, a=a, b=b)

    def p_alive(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """Probability that each customer is still alive at ``T``.

        Args:
            frequency: Number of repeat purchases per customer.
            recency: Time of the last purchase since the first, in model time units.
            T: Time from the first purchase to the end of observation, in model time units.

        Returns:
            Probabilities in [0, 1]; exactly 1 for customers with ``frequency == 0``, since
            BG/NBD customers can only drop out right after a purchase.
        """
        x, tx, big_t = _check_rft(frequency, recency, T)
        return core.p_alive(self._core_params(), x, tx, big_t)

    def p_no_purchase(self, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> FloatArray:
        """Probability that each customer makes no purchase in the next ``t`` time units.

        A BG/NBD customer drops out only right after a purchase, so one alive at ``T`` makes none in ``t`` with
        probability ``exp(-lambda t)``; given alive, ``lambda`` is Gamma(``r + x``, ``alpha + T``) a posteriori.
        Hence ``1 - P(alive) + P(alive) ((alpha + T) / (alpha + T + t)) ** (r + x)``.

        Args:
            t: Horizon in model time units.
            frequency: Number of repeat purchases per customer.
            recency: Time of the last purchase since the first, in model time units.
            T: Time from the first purchase to the end of observation, in model time units.
        """
        x, tx, big_t = _check_rft(frequency, recency, T)
        r, alpha, _, _ = self._fitted_params()
        alive = core.p_alive(self._core_params(), x, tx, big_t)
        quiet = np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t)))
        return 1.0 - alive + alive * quiet

    def expected_purchases(
        self, t: float | ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """Conditional expected number of purchases in the next ``t`` time units.

        Implements equation (10) of Fader, Hardie & Lee (2005). The Gaussian hypergeometric
        term is evaluated after Euler's transformation, under which its first two
        arguments no longer grow with the customer's frequency; the untransformed form
        loses all precision (or overflows) for frequent buyers.

        Args:
            t: Horizon in model time units (scalar or one value per customer).
            frequency: Number of repeat purchases per customer.
            recency: Time of the last purchase since the first, in model time units.
            T: Time from the first purchase to the end of observation, in model time units.

        Returns:
            Expected purchase counts, one per customer.

        Where ``hyp2f1`` breaks down (``a`` near 1, or parameters that ran to their
        bounds) the same expectation is computed by 1-d quadrature instead. The per-customer
        formulas live in :mod:`features.btyd` (serving evaluates them too); this fits.

        Raises:
            ValueError: If the model is not fitted or ``t`` is negative.
        """
        x, tx, big_t = _check_rft(frequency, recency, T)
        horizon = np.broadcast_to(np.asarray(t, dtype=float), x.shape)
        if np.any(horizon < 0) or not np.all(np.isfinite(horizon)):
            raise ValueError("t must be finite and non-negative")
        return core.expected_purchases(self._core_params(), horizon, x, tx, big_t)


class GammaGammaFitter(BaseEstimator):
    """Gamma-Gamma model of spend per transaction (Fader, Hardie & Lee 2005).

    Each transaction value is ``z ~ Gamma(p, nu)`` (shape, rate) around a customer-level
    rate ``nu ~ Gamma(q, v)``, independent of the purchase process; the population mean
    spend is ``p * v / (q - 1)``.

    Args:
        penalizer: L2 penalty on the (natural-scale) parameters, added to the mean negative
            log-likelihood.

    Attributes:
        params_: Fitted ``{"p", "q", "v"}``.
        log_likelihood_: Total log-likelihood of the training data at ``params_``.
        n_customers_: Number of customers (``frequency > 0`` and positive spend) used.
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    @staticmethod
    def _log_likelihood(log_params: FloatArray, x: FloatArray, m: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per-customer log-density of the mean spend ``m`` over ``x`` transactions, and its gradient."""
        p, q, v = np.exp(log_params)
        px = p * x
        log_vmx = np.log(v + m * x)
        ll = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(v)
            + (px - 1.0) * np.log(m)
            + px * np.log(x)
            - (px + q) * log_vmx
        )
        psi_pxq = digamma(px + q)
        d_p = x * (psi_pxq - digamma(px) + np.log(m) + np.log(x) - log_vmx)
        d_q = psi_pxq - digamma(q) + np.log(v) - log_vmx
        d_v = q / v - (px + q) / (v + m * x)
        return ll, np.column_stack([p * d_p, q * d_q, v * d_v])

    def _objective(self, log_params: FloatArray, x: FloatArray, m: FloatArray) -> tuple[float, FloatArray]:
        """Mean negative log-likelihood plus penalty, and its gradient."""
        ll, grad = self._log_likelihood(log_params, x, m)
        params = np.exp(log_params)
        value = -ll.mean() + self.penalizer * np.sum(params**2)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(log_params)
        return float(value), -grad.mean(axis=0) + 2.0 * self.penalizer * params**2

    def fit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGammaFitter:
        """Fit ``p``, ``q`` and ``v`` on the customers with repeat purchases.

        Customers with ``frequency == 0`` carry no repeat spend and those with a
        non-positive mean spend are outside the model's support, so both are skipped.

        Args:
            frequency: Number of repeat purchases per customer.
            monetary_value: Mean spend per repeat purchase.

        Returns:
            The fitted estimator.

        Raises:
            ValueError: If fewer than two customers qualify, on invalid input, or if the
                optimiser does not converge.
        """
        arr = _as_float_arrays(frequency=frequency, monetary_value=monetary_value)
        x_all, m_all = arr["frequency"], arr["monetary_value"]
        if self.penalizer < 0:
            raise ValueError(f"GammaGammaFitter: penalizer must be >= 0, got {self.penalizer}")
        use = (x_all > 0) & (m_all > 0)
        if use.sum() < 2:
            raise ValueError(
                "GammaGammaFitter.fit needs at least two customers with frequency > 0 and positive "
                f"monetary_value, got {int(use.sum())}"
            )
        x, m = x_all[use], m_all[use]
        # p = q = 2 puts the starting mean spend p*v/(q-1) at 2v, so v starts at half the mean.
        x0 = np.log(np.array([2.0, 2.0, max(np.mean(m), 1e-6) / 2.0]))
        x0 = np.clip(x0, -_LOG_BOUND + 1.0, _LOG_BOUND - 1.0)
        log_params = _fit_log_params(lambda th: self._objective(th, x, m), x0, "GammaGammaFitter")
        p, q, v = np.exp(log_params)
        self.params_ = {"p": float(p), "q": float(q), "v": float(v)}
        self.log_likelihood_ = float(self._log_likelihood(log_params, x, m)[0].sum())
        self.n_customers_ = int(x.size)
        return self

    def expected_average_value(self, frequency: ArrayLike, monetary_value: ArrayLike) -> FloatArray:
        """Conditional expected spend per transaction.

        A precision-weighted mix of the population mean ``p*v/(q-1)`` and the customer's
        own mean: ``(p*v + p*x*m) / (p*x + q - 1)``. Customers with ``frequency == 0`` (or
        a non-positive mean spend) get the population mean.

        Args:
            frequency: Number of repeat purchases per customer.
            monetary_value: Mean spend per repeat purchase.

        Returns:
            Expected spend per future transaction, one per customer.

        Raises:
            ValueError: If the model is not fitted, or if a population mean is needed while
                ``q <= 1`` (the Gamma-Gamma mean is infinite there).
        """
        if not hasattr(self, "params_"):
            raise ValueError("GammaGammaFitter is not fitted yet; call fit() first")
        arr = _as_float_arrays(frequency=frequency, monetary_value=monetary_value)
        x, m = arr["frequency"], arr["monetary_value"]
        p, q, v = self.params_["p"], self.params_["q"], self.params_["v"]
        known = (x > 0) & (m > 0)
        if np.any(~known) and q <= 1.0:
            raise ValueError(
                f"GammaGammaFitter: q = {q:.3f} <= 1, so the population mean spend is undefined; "
                "refit with a penalizer or on more data"
            )
        return GGParams(p=p, q=q, v=v).expected_average(x, np.where(known, m, np.nan))


class BTYDModel(BaseEstimator):
    """BG/NBD + Gamma-Gamma customer-value baseline on an RFM summary.

    Args:
        time_unit_days: Days per time unit of the summary (must match :func:`rfm_summary`).
        bg_penalizer: Penalizer of the BG/NBD fit.
        gg_penalizer: Penalizer of the Gamma-Gamma fit.

    Attributes:
        bg_: The fitted :class:`BetaGeoFitter`.
        gg_: The fitted :class:`GammaGammaFitter`.
    """

    def __init__(self, time_unit_days: float = 7.0, bg_penalizer: float = 0.0, gg_penalizer: float = 0.0) -> None:
        self.time_unit_days = time_unit_days
        self.bg_penalizer = bg_penalizer
        self.gg_penalizer = gg_penalizer

    @staticmethod
    def _columns(summary: pd.DataFrame) -> dict[str, FloatArray]:
        missing = set(_SUMMARY_COLUMNS) - set(summary.columns)
        if missing:
            raise ValueError(f"summary lacks column(s) {sorted(missing)}; build it with rfm_summary()")
        return {c: summary[c].to_numpy(dtype=float) for c in _SUMMARY_COLUMNS}

    def fit(self, summary: pd.DataFrame, y: Any = None) -> BTYDModel:
        """Fit both sub-models on an RFM summary.

        Args:
            summary: Output of :func:`rfm_summary`.
            y: Ignored; present for scikit-learn compatibility.

        Returns:
            The fitted estimator.

        Raises:
            ValueError: On an empty summary or if either fit fails.
        """
        if len(summary) == 0:
            raise ValueError("BTYDModel.fit: the summary is empty")
        if not self.time_unit_days > 0:
            raise ValueError(f"BTYDModel: time_unit_days must be positive, got {self.time_unit_days}")
        c = self._columns(summary)
        self.bg_ = BetaGeoFitter(penalizer=self.bg_penalizer).fit(c["frequency"], c["recency"], c["T"])
        self.gg_ = GammaGammaFitter(penalizer=self.gg_penalizer).fit(c["frequency"], c["monetary_value"])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "bg_") or not hasattr(self, "gg_"):
            raise ValueError("BTYDModel is not fitted yet; call fit() first")

    def _purchases(self, c: dict[str, FloatArray], horizon_days: float) -> FloatArray:
        return self.bg_.expected_purchases(horizon_days / self.time_unit_days, c["frequency"], c["recency"], c["T"])

    def predict_spend(self, summary: pd.DataFrame, horizon_days: float) -> pd.Series:
        """Expected spend over the next ``horizon_days``: E[purchases] x E[value per purchase].

        Args:
            summary: Output of :func:`rfm_summary`.
            horizon_days: Prediction horizon in days.

        Returns:
            Expected spend per customer, indexed like ``summary``.
        """
        self._check_fitted()
        c = self._columns(summary)
        value = self.gg_.expected_average_value(c["frequency"], c["monetary_value"])
        return pd.Series(self._purchases(c, horizon_days) * value, index=summary.index, name="expected_spend")

    def predict_clv(self, summary: pd.DataFrame, horizon_days: float, annual_discount: float = 0.0) -> pd.Series:
        """Discounted expected spend over the next ``horizon_days``.

        The horizon is cut into calendar-month steps (the last one may be partial); the
        purchases expected within each step are discounted to the present from the step's
        end. With ``annual_discount == 0`` this equals :meth:`predict_spend`.

        Args:
            summary: Output of :func:`rfm_summary`.
            horizon_days: Prediction horizon in days.
            annual_discount: Yearly discount rate, e.g. 0.1 for 10 %.

        Returns:
            Customer lifetime value over the horizon, indexed like ``summary``.

        Raises:
            ValueError: If the model is not fitted, ``horizon_days`` is negative or
                ``annual_discount <= -1``.
        """
        self._check_fitted()
        if annual_discount <= -1.0:
            raise ValueError(f"annual_discount must be > -1, got {annual_discount}")
        if horizon_days < 0:
            raise ValueError(f"horizon_days must be non-negative, got {horizon_days}")
        c = self._columns(summary)
        value = self.gg_.expected_average_value(c["frequency"], c["monetary_value"])
        n_steps = int(np.ceil(horizon_days / _DAYS_PER_MONTH - 1e-9))
        ends = np.minimum(np.arange(1, n_steps + 1) * _DAYS_PER_MONTH, horizon_days)
        clv = np.zeros(len(summary))
        previous = np.zeros(len(summary))
        for end in ends:
            cumulative = self._purchases(c, float(end))
            # Telescoping increments: with no discount the sum is exactly the horizon total.
            clv += (cumulative - previous) / (1.0 + annual_discount) ** (end / 365.25)
            previous = cumulative
        return pd.Series(clv * value, index=summary.index, name="clv")

    def p_no_purchase(self, summary: pd.DataFrame, horizon_days: float) -> pd.Series:
        """Probability of no purchase in the next ``horizon_days`` (:meth:`BetaGeoFitter.p_no_purchase`).

        Args:
            summary: Output of :func:`rfm_summary`.
            horizon_days: Horizon in days.

        Returns:
            Probabilities per customer, indexed like ``summary``.
        """
        self._check_fitted()
        c = self._columns(summary)
        t = horizon_days / self.time_unit_days
        p = self.bg_.p_no_purchase(t, c["frequency"], c["recency"], c["T"])
        return pd.Series(p, index=summary.index, name="p_no_purchase")

    def p_alive(self, summary: pd.DataFrame) -> pd.Series:
        """BG/NBD probability that each customer is still active.

        Args:
            summary: Output of :func:`rfm_summary`.

        Returns:
            P(alive) per customer, indexed like ``summary``.
        """
        self._check_fitted()
        c = self._columns(summary)
        return pd.Series(self.bg_.p_alive(c["frequency"], c["recency"], c["T"]), index=summary.index, name="p_alive")


def bgnbd_metadata(model: BTYDModel, summary: pd.DataFrame) -> dict[str, Any]:
    """The fitted BG/NBD parameters as the CLTV bundle stores them for per-customer answers (:mod:`features.btyd`).

    ``degenerate`` is true when the fit cannot tell who is still active: P(alive) at least
    :data:`features.btyd.DEGENERATE_P_ALIVE` for 99% of the repeat customers it saw (on online retail the dropout
    probability runs to 0 and P(alive) is 1.0 for everyone), or no repeat customer at all. Serving then falls back.

    Args:
        model: A fitted :class:`BTYDModel`.
        summary: The summary it was fitted on (:func:`rfm_summary`).
    """
    model._check_fitted()
    params = model.bg_._core_params()
    repeat = summary[summary.frequency > 0]
    if len(repeat):
        alive = model.bg_.p_alive(repeat.frequency, repeat.recency, repeat["T"])
        low = float(np.quantile(alive, 0.01))
    else:
        low = 1.0
    out: dict[str, Any] = BGParams(params.r, params.alpha, params.a, params.b, float(model.time_unit_days)).to_json()
    out.update({"degenerate": bool(low >= core.DEGENERATE_P_ALIVE), "p_alive_q01": low})
    return out
