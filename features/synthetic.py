"""A seeded, realistic synthetic customer dataset in the canonical tables (CONTRACT §1).

The generator simulates a non-contract retail business week by week, vectorised over customers. Each
customer carries latent state that no single table shows directly:

* a purchase rate (gamma distributed across customers) modulated by seasonality (a December peak),
* a typical order value (gamma), a channel preference and a category preference,
* a static satisfaction level and a time-varying dissatisfaction ``D`` that mean-reverts, jumps on service
  failures, rises with every complaint and falls a little when the customer takes an offer,
* a life-cycle state: active -> disengaging -> dead. The weekly hazard of starting to disengage grows with
  ``D``, low satisfaction and recent support contacts. While disengaging, web/app sessions and e-mail opens
  decay week after week, support contacts rise and purchases thin out; then the customer stops for good.

Because the hazard is driven by dissatisfaction and the disengaging phase shows first in interactions and
surveys, a model that sees those tables beats one that only sees purchase recency, frequency and monetary
value at predicting "no purchase in the next 90 days" (CONTRACT §2: churn is a missing purchase; ``churn_ts``
is always null here).

Offers are randomised e-mail campaigns with a control arm (``offer_id = "none"``, propensity 0.25) whose
effect differs between customers: ``discount_10`` lifts price-sensitive low spenders, ``free_shipping`` lifts
web-heavy customers and ``loyalty_points`` lifts long-tenure frequent buyers.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic

from features.schema import CONTROL_OFFER, TABLES, TRANSACTION_CHANNELS

__all__ = [
    "CATEGORIES",
    "OFFER_IDS",
    "REGIONS",
    "SEGMENTS",
    "SyntheticConfig",
    "generate",
    "generate_with_truth",
    "write_dataset",
]

CATEGORIES: tuple[str, ...] = ("apparel", "beauty", "books", "electronics", "grocery", "home", "sports", "toys")
REGIONS: tuple[str, ...] = ("north", "south", "east", "west")
SEGMENTS: tuple[str, ...] = ("consumer", "smb")
#: Arms of every campaign, control first; each is drawn with probability 1/4.
OFFER_IDS: tuple[str, ...] = (CONTROL_OFFER, "discount_10", "free_shipping", "loyalty_points")

_DAY_NS = 86_400 * 10**9
_WEEK_NS = 7 * _DAY_NS
_PRODUCTS_PER_CATEGORY = 50
_OFFER_WINDOW_DAYS = 14
_CATALOG = {
    # offer_id: (cost, eligible_if, fallback value when no order was produced)
    "discount_10": (5.0, None, 45.0),
    "free_shipping": (3.0, None, 50.0),
    "loyalty_points": (1.5, "tenure_days >= 180", 55.0),
}

# Life-cycle states.
_PENDING, _ACTIVE, _DISENGAGING, _DEAD = 0, 1, 2, 3


class SyntheticConfig(pydantic.BaseModel, extra="forbid"):
    """Size, period and seed of a synthetic dataset."""

    n_customers: int = pydantic.Field(5000, ge=1, le=999_999, description="Number of customers to simulate.")
    start: datetime = pydantic.Field(
        datetime(2023, 1, 1), description="First instant of the observed period; no event is before it."
    )
    end: datetime = pydantic.Field(
        datetime(2025, 1, 1), description="End of the observed period (exclusive); no event is at or after it."
    )
    seed: int = pydantic.Field(7, description="Seed of the only random generator used; same seed, same data.")
    with_offers: bool = pydantic.Field(True, description="Also produce the `offers` and `offer_catalog` tables.")
    with_interactions: bool = pydantic.Field(True, description="Also produce the `interactions` table.")
    with_surveys: bool = pydantic.Field(True, description="Also produce the `surveys` table.")

    @pydantic.model_validator(mode="after")
    def _check_period(self) -> SyntheticConfig:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end must be timezone-naive (UTC)")
        if (self.end - self.start).days < 28:
            raise ValueError("the period from start to end must span at least 28 days")
        return self


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """Draws one category per row of a cumulative probability matrix."""
    u = rng.random(cum.shape[0])
    return np.minimum((u[:, None] > cum).sum(axis=1), cum.shape[1] - 1)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return (prefix + pd.Series(numbers, dtype="int64").astype(str).str.zfill(width)).to_numpy(dtype=object)


def _ts(ns: np.ndarray) -> pd.Series:
    # Whole seconds: real event logs rarely carry sub-second noise and it keeps CSV round-trips exact.
    return pd.Series((ns // 10**9 * 10**9).astype("datetime64[ns]"))


class _Events:
    """Per-week sparse event counts collected during the simulation, expanded to rows afterwards."""

    def __init__(self) -> None:
        self.week: list[np.ndarray] = []
        self.idx: list[np.ndarray] = []
        self.count: list[np.ndarray] = []

    def add(self, week: int, counts: np.ndarray) -> None:
        nz = np.flatnonzero(counts)
        self.week.append(np.full(nz.size, week, dtype=np.int64))
        self.idx.append(nz)
        self.count.append(counts[nz])

    def expand(self, rng: np.random.Generator, start_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Customer index and timestamp (ns) of every event, uniformly placed inside its week."""
        if not self.idx:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        count = np.concatenate(self.count).astype(np.int64)
        idx = np.repeat(np.concatenate(self.idx), count)
        week = np.repeat(np.concatenate(self.week), count)
        ts = start_ns + week * _WEEK_NS + (rng.random(idx.size) * _WEEK_NS).astype(np.int64)
        return idx, ts


def generate(config: SyntheticConfig) -> dict[str, pd.DataFrame]:
    """Simulates the customer base and returns its canonical tables.

    Pure: no I/O, and the only randomness is ``np.random.default_rng(config.seed)``, so the same config
    always yields identical frames.

    Args:
        config: Size, period, seed and which optional tables to produce.

    Returns:
        Table name to frame: ``transactions`` and ``customers`` always; ``interactions``, ``surveys``,
        ``offers`` and ``offer_catalog`` when enabled. Columns follow ``features.schema``; every event lies
        in ``[config.start, config.end)``. Survey scores are integers where higher is better for all three
        kinds (NPS 0-10, CSAT 1-5, CES 1-7).
    """
    return generate_with_truth(config)[0]


def generate_with_truth(config: SyntheticConfig) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """:func:`generate`, plus what no real data set can show: every offer's true acceptance probability per arm.

    An offer sent to customer *i* is accepted with probability ``sigmoid(b_i + u_ia)``, where ``b_i`` is the
    customer's base log-odds at the send time and ``u_ia`` the arm's effect on them (0 for the control). The
    truth holds that probability for *every* arm, the one drawn and the ones not drawn, so a policy's value
    can be computed exactly rather than estimated from the logged arm (for benchmarks: it is not a contract
    table and :func:`write_dataset` is never given it).

    An accepted offer places one order, whose value is drawn around the customer's mean order value ``m_i``
    (10% less under the discount, ``k_a = 0.9``; 1 otherwise) and logged as the offer's ``revenue``. So the
    truth in spend, the expected revenue of the offer under arm *a*, is ``P(accept | i, a) * m_i * k_a``.

    Args:
        config: As for :func:`generate` (the tables are the same frames).

    Returns:
        The tables, and one row per row of ``offers`` (``customer_id``, ``offer_ts`` = the offer's ``ts``) with a
        column ``p_<offer_id>`` per arm (the acceptance probability), the control's included, then a column
        ``s_<offer_id>`` per arm (the expected revenue); empty without offers.
    """
    rng = np.random.default_rng(config.seed)
    n = config.n_customers
    start_ns = pd.Timestamp(config.start).as_unit("ns").value
    end_ns = pd.Timestamp(config.end).as_unit("ns").value
    n_weeks = int(-(-(end_ns - start_ns) // _WEEK_NS))
    week_start_ns = start_ns + np.arange(n_weeks, dtype=np.int64) * _WEEK_NS

    # --- static attributes and latent traits -------------------------------------------------------------
    region = rng.integers(0, len(REGIONS), n)
    smb = rng.random(n) < 0.22
    age = np.clip(np.round(rng.normal(42, 13, n)), 18, 85).astype(np.int64)

    pre_start = rng.random(n) < 0.4
    signup_ns = np.where(
        pre_start,
        start_ns - (rng.random(n) * 730 * _DAY_NS).astype(np.int64) - _DAY_NS,
        start_ns + (rng.random(n) * max(end_ns - start_ns - 14 * _DAY_NS, _DAY_NS)).astype(np.int64),
    )
    # In-period customers start in the week after signing up; their first order is the signup itself.
    first_week = np.where(pre_start, 0, (signup_ns - start_ns) // _WEEK_NS + 1)

    lam = rng.gamma(1.6, 0.16 / 1.6, n) * np.where(smb, 1.5, 1.0)  # orders per week
    lam_med = float(np.median(lam))
    spend = rng.gamma(5.0, 48.0 / 5.0, n) * np.where(smb, 1.6, 1.0)  # mean order value
    price_sens = _sigmoid(-(np.log(spend) - np.log(np.median(spend))) / 0.2)

    # Younger customers lean towards the app, older ones towards the store and phone.
    young = _sigmoid((35 - age) / 8.0)
    alpha = np.stack([np.full(n, 2.0), 0.5 + 2.5 * young, 1.8 - young, np.full(n, 0.35)], axis=1)
    chan_p = rng.gamma(alpha)
    chan_p /= chan_p.sum(axis=1, keepdims=True)
    chan_cum = np.cumsum(chan_p, axis=1)
    p_web, p_app, p_store = chan_p[:, 0], chan_p[:, 1], chan_p[:, 2]
    cat_p = rng.gamma(np.full((n, len(CATEGORIES)), 0.6))
    cat_cum = np.cumsum(cat_p / cat_p.sum(axis=1, keepdims=True), axis=1)

    engage = rng.gamma(2.0, 0.6 / 2.0, n)  # digital sessions per week
    open_rate = rng.beta(2.0, 4.0, n)  # share of the weekly newsletter opened
    click_rate = rng.beta(2.0, 6.0, n)
    support_base = rng.gamma(2.0, 0.012 / 2.0, n)  # tickets per week when content
    satisfaction = rng.normal(0.0, 1.0, n)
    hazard_base = rng.normal(np.log(0.0035), 0.45, n)

    # --- life-cycle simulation ---------------------------------------------------------------------------
    state = np.full(n, _PENDING, dtype=np.int8)
    dormant = pre_start & (rng.random(n) < 0.08)  # long-gone customers still on file
    state[dormant] = _DEAD
    dis = rng.normal(0.0, 0.3, n)  # dissatisfaction D
    weeks_dis = np.zeros(n, dtype=np.int64)
    recent_support = np.zeros(n)

    orders, web, app, opens, clicks, visits = (_Events() for _ in range(6))
    tickets, calls, complaints = _Events(), _Events(), _Events()
    survey_idx: list[np.ndarray] = []
    survey_week: list[np.ndarray] = []
    survey_z: list[np.ndarray] = []

    offer_parts: dict[str, list[np.ndarray]] = {k: [] for k in ("idx", "ts", "arm", "acc", "order_ts", "value")}
    campaign_weeks: set[int] = set()
    true_p: list[np.ndarray] = []  # per offer: acceptance probability under every arm (the truth)
    true_s: list[np.ndarray] = []  # per offer: expected revenue under every arm (the truth in spend)
    if config.with_offers:
        w = int(rng.integers(2, 6))
        last_ok = (end_ns - start_ns - (_OFFER_WINDOW_DAYS + 2) * _DAY_NS) // _WEEK_NS
        while w <= last_ok:
            campaign_weeks.add(w)
            w += int(rng.integers(4, 9))

    doy = pd.DatetimeIndex(week_start_ns.astype("datetime64[ns]") + np.timedelta64(3, "D")).dayofyear
    season = 1.0 + 0.15 * np.cos(2 * np.pi * (doy.to_numpy() - 15) / 365.25)
    season = season * np.where(doy >= 335, 1.9, np.where(doy >= 325, 1.4, 1.0))  # Black Friday, December

    for w in range(n_weeks):
        state[(state == _PENDING) & (first_week <= w)] = _ACTIVE
        alive = (state == _ACTIVE) | (state == _DISENGAGING)
        fading = state == _DISENGAGING
        decay = np.where(fading, 0.72**weeks_dis, 1.0) * alive

        orders.add(w, rng.poisson(lam * season[w] * np.where(fading, 0.6**weeks_dis, 1.0) * alive))
        # Drawn even when the table is not wanted, so the flags do not shift the other tables' randomness.
        web.add(w, rng.poisson(engage * (0.2 + 2.0 * p_web) * decay))
        app.add(w, rng.poisson(engage * (0.1 + 2.2 * p_app) * decay))
        n_open = rng.poisson(1.3 * open_rate * decay)
        opens.add(w, n_open)
        clicks.add(w, rng.binomial(n_open, click_rate))
        visits.add(w, rng.poisson(0.25 * p_store * decay))
        support_mult = support_base * np.exp(1.2 * np.clip(dis, -2, 4)) * np.where(fading, 5.0, 1.0) * alive
        n_ticket = rng.poisson(support_mult)
        n_call = rng.poisson(0.5 * support_mult)
        n_complaint = rng.poisson(0.25 * support_mult * np.exp(0.5 * np.clip(dis, -2, 4)))
        tickets.add(w, n_ticket)
        calls.add(w, n_call)
        complaints.add(w, n_complaint)

        answered = np.flatnonzero(alive & (rng.random(n) < 0.025))
        survey_idx.append(answered)
        survey_week.append(np.full(answered.size, w, dtype=np.int64))
        survey_z.append(
            0.8 * satisfaction[answered]
            - 0.9 * dis[answered]
            - 1.0 * fading[answered]
            + rng.normal(0.0, 0.5, answered.size)
        )

        accepted_now = np.zeros(n, dtype=bool)
        if w in campaign_weeks:
            target = np.flatnonzero(alive & (rng.random(n) < 0.3))
            arm = rng.integers(0, len(OFFER_IDS), target.size)
            send_ns = week_start_ns[w] + (rng.random(target.size) * _DAY_NS).astype(np.int64)
            tenure = (send_ns - signup_ns[target]) / _DAY_NS
            loyal = _sigmoid((tenure - 365.0) / 60.0) * _sigmoid(2.5 * np.log(lam[target] / lam_med))
            arm_effects = np.stack(
                [
                    np.zeros(target.size),
                    2.0 * price_sens[target] - 0.5,
                    3.0 * (p_web[target] - 0.3),
                    2.4 * loyal - 0.3,
                ],
                axis=1,
            )
            uplift = arm_effects[np.arange(target.size), arm]
            base = (
                -2.0
                + 0.6 * np.log(lam[target] / lam_med)
                - 1.2 * fading[target]
                - 0.3 * dis[target]
                + 0.4 * satisfaction[target]
            )
            acc = rng.random(target.size) < _sigmoid(base + uplift)
            true_p.append(_sigmoid(base[:, None] + arm_effects))
            order_ns = send_ns + (rng.uniform(0.02, _OFFER_WINDOW_DAYS, target.size) * _DAY_NS).astype(np.int64)
            # The discount's order is 10% smaller; an order's mean value is the customer's mean order value.
            order_scale = np.where(np.arange(len(OFFER_IDS)) == 1, 0.9, 1.0)
            value = rng.gamma(5.0, spend[target] / 5.0) * order_scale[arm]
            true_s.append(true_p[-1] * spend[target][:, None] * order_scale)
            for key, arr in zip(offer_parts, (target, send_ns, arm, acc, order_ns, value), strict=True):
                offer_parts[key].append(arr)
            accepted_now[target[acc]] = True

        # Complaints feed back into dissatisfaction (and so into the hazard); a taken offer soothes a little.
        shock = (rng.random(n) < 0.012) * rng.exponential(1.5, n)
        dis = 0.95 * dis + rng.normal(0.0, 0.1, n) + shock + 0.5 * n_complaint + 0.15 * n_ticket
        dis -= 0.3 * accepted_now
        recent_support = 0.8 * recent_support + n_ticket + n_call + 2 * n_complaint
        log_h = hazard_base + 0.9 * dis - 0.6 * satisfaction + 0.45 * np.minimum(recent_support, 4)
        start_fading = (state == _ACTIVE) & (rng.random(n) < 1.0 - np.exp(-np.exp(log_h)))
        stop = fading & (rng.random(n) < 0.14)
        weeks_dis += fading
        state[stop] = _DEAD
        state[start_fading] = _DISENGAGING

    # --- expand to rows ----------------------------------------------------------------------------------
    width = max(6, len(str(n - 1)))
    cust_ids = _ids("c", np.arange(n), width)
    tables: dict[str, pd.DataFrame] = {}

    offers_df = None
    if config.with_offers:
        parts = {k: (np.concatenate(v) if v else np.empty(0)) for k, v in offer_parts.items()}
        o_idx = parts["idx"].astype(np.int64)
        o_acc = parts["acc"].astype(bool)
        o_arm = parts["arm"].astype(np.int64)
    else:
        o_idx = np.empty(0, dtype=np.int64)
        o_acc = np.empty(0, dtype=bool)
        o_arm = np.empty(0, dtype=np.int64)
        parts = {"order_ts": np.empty(0, dtype=np.int64), "value": np.empty(0)}

    reg_idx, reg_ts = orders.expand(rng, start_ns)
    new_idx = np.flatnonzero(~pre_start)  # the signup order
    acc_rows = np.flatnonzero(o_acc)
    ord_idx = np.concatenate([reg_idx, new_idx, o_idx[acc_rows]])
    ord_ts = np.concatenate([reg_ts, signup_ns[new_idx], parts["order_ts"][acc_rows].astype(np.int64)])
    ord_value = np.concatenate(
        [rng.gamma(5.0, spend[reg_idx] / 5.0), rng.gamma(5.0, spend[new_idx] / 5.0), parts["value"][acc_rows]]
    )
    ord_offer = np.concatenate([np.full(reg_idx.size + new_idx.size, -1), acc_rows])
    keep = ord_ts < end_ns
    ord_idx, ord_ts, ord_value, ord_offer = ord_idx[keep], ord_ts[keep], ord_value[keep], ord_offer[keep]
    order_sort = np.lexsort((ord_idx, ord_ts))
    ord_idx, ord_ts, ord_value, ord_offer = (a[order_sort] for a in (ord_idx, ord_ts, ord_value, ord_offer))
    n_orders = ord_idx.size
    ord_channel = _pick(rng, chan_cum[ord_idx])

    n_lines = 1 + rng.binomial(4, 0.25, n_orders)
    line_order = np.repeat(np.arange(n_orders), n_lines)
    share = rng.exponential(1.0, line_order.size)
    share /= np.bincount(line_order, weights=share, minlength=n_orders)[line_order]
    amount = np.round(ord_value[line_order] * share, 2)
    # Free samples and gift lines; never on an offer order so its revenue equals the sum of its lines.
    zero = (rng.random(amount.size) < 0.006) & (ord_offer[line_order] < 0)
    amount[zero] = 0.0
    line_idx = ord_idx[line_order]
    category = _pick(rng, cat_cum[line_idx])
    rank = np.minimum((_PRODUCTS_PER_CATEGORY * rng.random(amount.size) ** 2).astype(np.int64), 49)
    quantity = 1 + np.minimum(rng.poisson(0.35, amount.size), 4)
    line_ts = ord_ts[line_order]

    # Returns refer to an earlier line: same order, product and channel, negative amount, some days later.
    ret = np.flatnonzero((amount > 0) & (rng.random(amount.size) < 0.03))
    ret_ts = line_ts[ret] + (rng.uniform(2, 30, ret.size) * _DAY_NS).astype(np.int64)
    ret = ret[ret_ts < end_ns]
    ret_ts = ret_ts[ret_ts < end_ns]

    all_lines = np.concatenate([np.arange(amount.size), ret])
    all_amount = np.concatenate([amount, -amount[ret]])
    all_ts = np.concatenate([line_ts, ret_ts])
    product_ids = np.array(
        [f"p{c}{r:03d}" for c in range(len(CATEGORIES)) for r in range(_PRODUCTS_PER_CATEGORY)], dtype=object
    )
    order_ids = _ids("o", np.arange(n_orders), max(7, len(str(n_orders))))
    tx = pd.DataFrame(
        {
            "customer_id": cust_ids[line_idx[all_lines]],
            "ts": _ts(all_ts),
            "amount": all_amount.astype(np.float64),
            "order_id": order_ids[line_order[all_lines]],
            "product_id": product_ids[category[all_lines] * _PRODUCTS_PER_CATEGORY + rank[all_lines]],
            "category": np.asarray(CATEGORIES, dtype=object)[category[all_lines]],
            "quantity": quantity[all_lines].astype(np.int64),
            "channel": np.asarray(TRANSACTION_CHANNELS, dtype=object)[ord_channel[line_order[all_lines]]],
        }
    )
    tables["transactions"] = tx.sort_values(["ts", "order_id", "amount"], kind="stable").reset_index(drop=True)

    tables["customers"] = pd.DataFrame(
        {
            "customer_id": cust_ids,
            "signup_ts": _ts(signup_ns),
            "churn_ts": pd.Series(np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")),
            "region": np.asarray(REGIONS, dtype=object)[region],
            "segment": np.where(smb, SEGMENTS[1], SEGMENTS[0]).astype(object),
            "age": age,
        }
    )

    if config.with_interactions:
        kinds = (
            (web, "web", "session"),
            (app, "app", "session"),
            (opens, "email", "open"),
            (clicks, "email", "click"),
            (visits, "store", "visit"),
            (tickets, "support", "ticket"),
            (calls, "phone", "call"),
            (complaints, "support", "complaint"),
        )
        frames = []
        for events, channel, event_type in kinds:
            idx, ts = events.expand(rng, start_ns)
            keep = ts < end_ns
            idx, ts = idx[keep], ts[keep]
            value = np.round(rng.gamma(2.0, 3.5, idx.size), 1) if event_type == "session" else np.nan
            frames.append(
                pd.DataFrame(
                    {
                        "customer_id": cust_ids[idx],
                        "ts": _ts(ts),
                        "channel": channel,
                        "event_type": event_type,
                        "value": pd.Series(value, index=range(idx.size), dtype=np.float64),
                    }
                )
            )
        inter = pd.concat(frames, ignore_index=True)
        tables["interactions"] = inter.sort_values(["ts", "customer_id"], kind="stable").reset_index(drop=True)

    if config.with_surveys:
        s_idx = np.concatenate(survey_idx)
        s_week = np.concatenate(survey_week)
        z = np.concatenate(survey_z)
        s_ts = week_start_ns[s_week] + (rng.random(s_idx.size) * _WEEK_NS).astype(np.int64)
        kind = rng.choice(3, size=s_idx.size, p=[0.5, 0.3, 0.2])
        score = np.select(
            [kind == 0, kind == 1],
            [np.clip(np.round(7.6 + 1.7 * z), 0, 10), np.clip(np.round(3.9 + 0.8 * z), 1, 5)],
            np.clip(np.round(5.0 + 1.1 * z), 1, 7),
        )
        keep = s_ts < end_ns
        surveys = pd.DataFrame(
            {
                "customer_id": cust_ids[s_idx[keep]],
                "ts": _ts(s_ts[keep]),
                "kind": np.asarray(("nps", "csat", "ces"), dtype=object)[kind[keep]],
                "score": score[keep].astype(np.int64),
            }
        )
        tables["surveys"] = surveys.sort_values(["ts", "customer_id"], kind="stable").reset_index(drop=True)

    if config.with_offers:
        # Revenue is what the attributed order actually contributed to transactions.
        revenue = np.zeros(o_idx.size)
        line_rev = np.bincount(line_order, weights=amount, minlength=n_orders)
        is_offer_order = ord_offer >= 0
        revenue[ord_offer[is_offer_order]] = line_rev[is_offer_order]
        send = parts["ts"].astype(np.int64)
        # The outcome is known when the offer's order is placed, or when the offer window closes without one.
        responded = np.where(o_acc, parts["order_ts"].astype(np.int64), send + _OFFER_WINDOW_DAYS * _DAY_NS)
        offers_df = pd.DataFrame(
            {
                "customer_id": cust_ids[o_idx],
                "ts": _ts(send),
                "offer_id": np.asarray(OFFER_IDS, dtype=object)[o_arm],
                "accepted": o_acc,
                "revenue": np.round(revenue, 2),
                "responded_ts": _ts(responded),
                "channel": "email",
                "propensity": np.full(o_idx.size, 1.0 / len(OFFER_IDS)),
            }
        )
        tables["offers"] = offers_df.sort_values(["ts", "customer_id"], kind="stable").reset_index(drop=True)
        rows = []
        for offer_id, (cost, eligible_if, fallback) in _CATALOG.items():
            taken = offers_df["accepted"] & (offers_df["offer_id"] == offer_id)
            value = round(float(offers_df.loc[taken, "revenue"].mean()), 2) if taken.any() else fallback
            rows.append({"offer_id": offer_id, "value": value, "cost": cost, "eligible_if": eligible_if})
        tables["offer_catalog"] = pd.DataFrame(rows)

    for name, frame in tables.items():
        spec = TABLES[name]
        known = [c.name for c in spec.columns if c.name in frame.columns]
        tables[name] = frame[known + [c for c in frame.columns if c not in known]]
    probs = np.concatenate(true_p) if true_p else np.empty((0, len(OFFER_IDS)))
    spends = np.concatenate(true_s) if true_s else np.empty((0, len(OFFER_IDS)))
    sent = parts.get("ts", np.empty(0)).astype(np.int64)
    truth = pd.DataFrame({"customer_id": cust_ids[o_idx], "offer_ts": _ts(sent)})
    for j, offer_id in enumerate(OFFER_IDS):
        truth[f"p_{offer_id}"] = probs[:, j]
    for j, offer_id in enumerate(OFFER_IDS):
        truth[f"s_{offer_id}"] = spends[:, j]
    return tables, truth


def write_dataset(tables: dict[str, pd.DataFrame], out: Path) -> None:
    """Writes each table to ``out/<table>.parquet``, atomically per file.

    Args:
        tables: Table name to frame, as returned by :func:`generate`.
        out: Data directory; created when missing.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        # A temp file in the same directory makes os.replace atomic, so readers never see half a file.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".parquet.tmp", dir=out)
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; data tables are shared
            os.replace(tmp, out / f"{name}.parquet")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
