"""Every customer feature, defined once, as a SQL expression over a cut-off time T.

Each :class:`Feature` is an aggregate (or a derived expression over other features) evaluated per customer on
rows with ``ts < T``. The same definitions build the offline training table, the batch predictions and the
online store, so training and serving cannot drift apart. The SQL is plain aggregates, ``CASE`` and window
functions (plus ``max_by`` and ``epoch``) in DuckDB's dialect, chosen so that SQLGlot can transpile it to Spark
SQL for users who outgrow one machine.

The definitions are pure: :func:`feature_query` turns (cut-off, response window) into SQL text with no I/O and
no ``now()``; running that text is the caller's business (:mod:`features.pipeline`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from features.schema import (
    EVENT_TYPES,
    INTERACTION_CHANNELS,
    SUPPORT_EVENT_TYPES,
    SURVEY_KINDS,
    TRANSACTION_CHANNELS,
)

#: Bumped by hand when the meaning of a feature changes without its SQL changing.
FEATURE_SET_MAJOR = 1

#: Default days after an offer's ``ts`` at which its outcome counts as known when ``offers.responded_ts`` is empty
#: (CONTRACT §2 "known-at time"): features at T use ``accepted``/``revenue`` only once known before T. The window in
#: use is a setting (``FeatureConfig.response_window_days``) and part of :func:`feature_set_version`.
RESPONSE_WINDOW_DAYS = 14

#: The feature that marks a contract customer cancelled before T (CONTRACT §2: answered as already churned).
CANCELLED_FEATURE = "cancelled_before_asof"


@dataclass(frozen=True)
class Feature:
    """One feature: its name, the source relation it aggregates, its SQL and what it means.

    Attributes:
        name: Column name in the feature table and in model inputs.
        source: Relation the expression aggregates (see ``_SOURCES``), or ``"derived"`` for an expression
            over other features' names.
        sql: Aggregate SQL expression (or scalar expression for derived features).
        description: What the feature means, for documentation and reason texts.
        fill_zero: Whether a customer with no source rows gets 0 (counts, sums) rather than NULL.
    """

    name: str
    source: str
    sql: str
    description: str
    fill_zero: bool = False


def _count(cond: str) -> str:
    return f"count(CASE WHEN {cond} THEN 1 END)"


def _sum(value: str, cond: str) -> str:
    return f"sum(CASE WHEN {cond} THEN {value} ELSE 0 END)"


def _trend(recent: str, previous: str) -> str:
    # Bounded in [-1, 1] so that one large order does not dominate the split points.
    return f"({recent} - {previous}) / (abs({recent}) + abs({previous}) + 1.0)"


def _build_registry() -> tuple[Feature, ...]:
    f: list[Feature] = []
    buy = "amount > 0"

    # Orders (one row per order: lines summed) carry recency, frequency, monetary and their trends.
    f += [
        Feature(
            "recency_days",
            "orders",
            f"min(CASE WHEN {buy} THEN days_ago END)",
            "Days since the last purchase",
        ),
        Feature(
            "first_purchase_days",
            "orders",
            f"max(CASE WHEN {buy} THEN days_ago END)",
            "Days since the first purchase",
        ),
        Feature("frequency_total", "orders", _count(buy), "Purchases ever", True),
        Feature("monetary_total", "orders", "sum(amount)", "Net spend ever (returns subtracted)", True),
        Feature("avg_order_value", "orders", f"avg(CASE WHEN {buy} THEN amount END)", "Average purchase value"),
        Feature("max_order_value", "orders", f"max(CASE WHEN {buy} THEN amount END)", "Largest purchase value"),
        Feature("items_per_order", "orders", f"avg(CASE WHEN {buy} THEN items END)", "Average items per purchase"),
        Feature(
            "active_months_365d",
            "orders",
            f"count(DISTINCT CASE WHEN {buy} AND days_ago < 365 THEN date_trunc('month', ts) END)",
            "Distinct months with a purchase in the last year",
            True,
        ),
    ]
    for w in (30, 90, 365):
        f.append(
            Feature(
                f"frequency_{w}d",
                "orders",
                _count(f"{buy} AND days_ago < {w}"),
                f"Purchases, last {w} days",
                True,
            )
        )
        f.append(
            Feature(
                f"monetary_{w}d",
                "orders",
                _sum("amount", f"days_ago < {w}"),
                f"Net spend, last {w} days",
                True,
            )
        )
    for w in (30, 90):
        prev = f"days_ago >= {w} AND days_ago < {2 * w}"
        f.append(
            Feature(
                f"frequency_prev_{w}d",
                "orders",
                _count(f"{buy} AND {prev}"),
                f"Purchases, {w}-{2 * w} days ago",
                True,
            )
        )
        f.append(
            Feature(
                f"monetary_prev_{w}d",
                "orders",
                _sum("amount", prev),
                f"Net spend, {w}-{2 * w} days ago",
                True,
            )
        )
        f.append(
            Feature(
                f"frequency_trend_{w}d",
                "derived",
                _trend(f"frequency_{w}d", f"frequency_prev_{w}d"),
                f"Change in purchases, last {w} days vs the {w} before (-1..1)",
            )
        )
        f.append(
            Feature(
                f"monetary_trend_{w}d",
                "derived",
                _trend(f"monetary_{w}d", f"monetary_prev_{w}d"),
                f"Change in spend, last {w} days vs the {w} before (-1..1)",
            )
        )
    for ch in TRANSACTION_CHANNELS:
        f.append(
            Feature(
                f"share_orders_{ch}",
                "orders",
                f"avg(CASE WHEN {buy} THEN CASE WHEN channel = '{ch}' THEN 1.0 ELSE 0.0 END END)",
                f"Share of purchases through the {ch} channel",
            )
        )

    # Lines carry returns and assortment breadth.
    f += [
        Feature(
            "return_lines_365d",
            "lines",
            _count("amount < 0 AND days_ago < 365"),
            "Returned lines, last year",
            True,
        ),
        Feature(
            "return_amount_365d",
            "lines",
            _sum("-amount", "amount < 0 AND days_ago < 365"),
            "Value returned, last year",
            True,
        ),
        Feature(
            "gross_spend_365d",
            "lines",
            _sum("amount", "amount > 0 AND days_ago < 365"),
            "Gross spend, last year",
            True,
        ),
        Feature(
            "return_ratio_365d",
            "derived",
            "return_amount_365d / (gross_spend_365d + 1.0)",
            "Returned value over gross spend, last year",
        ),
        Feature(
            "categories_365d",
            "lines",
            "count(DISTINCT CASE WHEN amount > 0 AND days_ago < 365 THEN category END)",
            "Distinct categories bought, last year",
            True,
        ),
        Feature(
            "products_365d",
            "lines",
            "count(DISTINCT CASE WHEN amount > 0 AND days_ago < 365 THEN product_id END)",
            "Distinct products bought, last year",
            True,
        ),
    ]

    # Inter-purchase times between distinct purchase days.
    f += [
        Feature("ipt_mean_days", "gaps", "avg(gap_days)", "Mean days between purchases"),
        Feature("ipt_std_days", "gaps", "stddev_samp(gap_days)", "Spread of days between purchases"),
        Feature("ipt_last_days", "gaps", "max_by(gap_days, ts)", "Days between the last two purchases"),
        Feature(
            "recency_over_ipt",
            "derived",
            "recency_days / CASE WHEN ipt_mean_days > 0 THEN ipt_mean_days END",
            "Days since last purchase relative to the usual gap (>1 = overdue)",
        ),
    ]

    # The BG/NBD summary (Fader, Hardie & Lee 2005) in days: repeat purchase days, first to last purchase day, and
    # first purchase day to T. Per-customer P(alive) and expected orders (features.btyd) read these three.
    f += [
        Feature("bg_frequency", "purchase_days", "count(*) - 1", "Repeat purchase days (BG/NBD frequency)"),
        Feature(
            "bg_recency_days",
            "purchase_days",
            "date_diff('day', min(day), max(day))",
            "Days from first to last purchase day (BG/NBD recency)",
        ),
        Feature(
            "bg_age_days",
            "purchase_days",
            "max(age_days)",
            "Days from the first purchase day to the as-of time (BG/NBD T)",
        ),
    ]

    # Customer record: tenure from sign-up, or from the first purchase when sign-up is unknown.
    f += [
        Feature("signup_days", "customer", "max(signup_days)", "Days since sign-up"),
        Feature(
            CANCELLED_FEATURE,
            "customer",
            "max(cancelled)",
            "Cancelled before the as-of time (1 = already churned)",
            True,
        ),
        Feature(
            "tenure_days",
            "derived",
            "coalesce(signup_days, first_purchase_days)",
            "Days since sign-up or first purchase",
        ),
    ]

    # Interactions by channel and type, engagement trend, and support contacts.
    for ch in INTERACTION_CHANNELS:
        for w in (30, 90):
            f.append(
                Feature(
                    f"interactions_{ch}_{w}d",
                    "interactions",
                    _count(f"channel = '{ch}' AND days_ago < {w}"),
                    f"Interactions on {ch}, last {w} days",
                    True,
                )
            )
        f.append(
            Feature(
                f"days_since_{ch}",
                "interactions",
                f"min(CASE WHEN channel = '{ch}' THEN days_ago END)",
                f"Days since the last {ch} interaction",
            )
        )
    for ev in EVENT_TYPES:
        f.append(
            Feature(
                f"events_{ev}_90d",
                "interactions",
                _count(f"event_type = '{ev}' AND days_ago < 90"),
                f"{ev} events, last 90 days",
                True,
            )
        )
    support = "(channel = 'support' OR event_type IN (" + ", ".join(f"'{e}'" for e in SUPPORT_EVENT_TYPES) + "))"
    f += [
        Feature("interactions_90d", "interactions", _count("days_ago < 90"), "Interactions, last 90 days", True),
        Feature(
            "interactions_prev_90d",
            "interactions",
            _count("days_ago >= 90 AND days_ago < 180"),
            "Interactions, 90-180 days ago",
            True,
        ),
        Feature(
            "engagement_trend_90d",
            "derived",
            _trend("interactions_90d", "interactions_prev_90d"),
            "Change in interactions, last 90 days vs the 90 before (-1..1)",
        ),
        Feature("days_since_interaction", "interactions", "min(days_ago)", "Days since any interaction"),
        Feature(
            "support_contacts_90d",
            "interactions",
            _count(f"{support} AND days_ago < 90"),
            "Support contacts, last 90 days",
            True,
        ),
        Feature(
            "support_contacts_365d",
            "interactions",
            _count(f"{support} AND days_ago < 365"),
            "Support contacts, last year",
            True,
        ),
        Feature(
            "days_since_support_contact",
            "interactions",
            f"min(CASE WHEN {support} THEN days_ago END)",
            "Days since a support contact (any channel)",
        ),
    ]

    # Surveys: latest and average score per kind.
    for kind in SURVEY_KINDS:
        f += [
            Feature(
                f"{kind}_last",
                "surveys",
                # Ties in time go to the higher score, so the value never depends on scan order.
                f"max_by(CASE WHEN kind = '{kind}' THEN score END, "
                f"CASE WHEN kind = '{kind}' THEN epoch(ts) * 100 + score END)",
                f"Latest {kind.upper()} score",
            ),
            Feature(
                f"{kind}_avg",
                "surveys",
                f"avg(CASE WHEN kind = '{kind}' THEN score END)",
                f"Average {kind.upper()} score",
            ),
            Feature(f"{kind}_count", "surveys", _count(f"kind = '{kind}'"), f"{kind.upper()} answers", True),
        ]
    f.append(Feature("days_since_survey", "surveys", "min(days_ago)", "Days since the last survey answer"))

    # Offers received (the control arm is not an offer) and how the customer responded.
    f += [
        Feature("offers_90d", "offers", _count("days_ago < 90"), "Offers received, last 90 days", True),
        Feature("offers_365d", "offers", _count("days_ago < 365"), "Offers received, last year", True),
        Feature(
            "offers_accepted_365d",
            "offers",
            _count("accepted AND days_ago < 365"),
            "Offers accepted, last year",
            True,
        ),
        Feature(
            "offer_accept_rate",
            "derived",
            "offers_accepted_365d / CASE WHEN offers_365d > 0 THEN offers_365d END",
            "Share of last year's offers accepted",
        ),
        Feature(
            "offer_revenue_365d",
            "offers",
            _sum("coalesce(revenue, 0)", "accepted AND days_ago < 365"),
            "Revenue from accepted offers, last year",
            True,
        ),
        Feature("days_since_offer", "offers", "min(days_ago)", "Days since the last offer"),
    ]
    return tuple(f)


@cache
def registry() -> tuple[Feature, ...]:
    """All features in their canonical (model input) order."""
    feats = _build_registry()
    names = [f.name for f in feats]
    if len(set(names)) != len(names):
        raise RuntimeError(f"duplicate feature names: {sorted({n for n in names if names.count(n) > 1})}")
    return feats


def feature_names() -> list[str]:
    """Names of all behavioural features in canonical order (static attributes come after them)."""
    return [f.name for f in registry()]


def describe(name: str) -> str:
    """Human description of a feature (or attribute column), for reasons and docs."""
    for feat in registry():
        if feat.name == name:
            return feat.description
    if name.startswith("attr_"):
        return f"Customer attribute {name[5:]}"
    return name


@cache
def feature_set_version(response_window_days: int = RESPONSE_WINDOW_DAYS) -> str:
    """Version of the feature set: the major number plus a hash of every definition and the response window.

    Training logs it with each model; serving refuses a model whose version differs from the code's.

    Args:
        response_window_days: Days after an offer when its outcome counts as known without ``responded_ts``; it
            changes the offer features, so it is part of the version.
    """
    h = hashlib.sha256()
    h.update(_SOURCES_SQL.encode())
    h.update(_POPULATION_SQL.encode())
    h.update(f"response_window={response_window_days};".encode())
    for feat in registry():
        h.update(f"{feat.name}|{feat.source}|{feat.sql}|{feat.fill_zero};".encode())
    return f"{FEATURE_SET_MAJOR}.{h.hexdigest()[:10]}"


def sql_ts(value: datetime) -> str:
    """A SQL timestamp literal."""
    return f"TIMESTAMP '{value.strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def quote_ident(name: str) -> str:
    """A SQL identifier for ``name``: double-quoted, embedded quotes doubled, so a name never changes a query."""
    return '"' + name.replace('"', '""') + '"'


def _days_ago(t: str, col: str = "ts") -> str:
    return f"(epoch({t}) - epoch({col})) / 86400.0"


# Source relations, templated on the cut-off {T}; every one keeps only rows strictly before T.
_SOURCES_SQL = """
lines AS (
    SELECT customer_id, ts, amount, product_id, category, {days_ts} AS days_ago
    FROM transactions WHERE ts < {T}
),
orders AS (
    SELECT customer_id, min(ts) AS ts, round(sum(amount), 6) AS amount, sum(coalesce(quantity, 1)) AS items,
           min(channel) AS channel, min({days_ts}) AS days_ago
    FROM transactions WHERE ts < {T}
    GROUP BY customer_id, coalesce(order_id, CAST(ts AS VARCHAR))
),
purchase_days AS (
    SELECT DISTINCT customer_id, CAST(ts AS DATE) AS day,
           (epoch({T}) - epoch(CAST(CAST(ts AS DATE) AS TIMESTAMP))) / 86400.0 AS age_days
    FROM transactions WHERE ts < {T} AND amount > 0
),
gaps AS (
    SELECT customer_id, day AS ts,
           date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS gap_days
    FROM purchase_days
    QUALIFY gap_days IS NOT NULL
),
customer AS (
    SELECT customer_id, CASE WHEN signup_ts < {T} THEN {days_signup} END AS signup_days,
           CASE WHEN churn_ts < {T} THEN 1 ELSE 0 END AS cancelled
    FROM customers
),
interactions AS (
    SELECT customer_id, ts, channel, event_type, {days_ts} AS days_ago
    FROM main.interactions WHERE ts < {T}
),
surveys AS (
    SELECT customer_id, ts, kind, score, {days_ts} AS days_ago FROM main.surveys WHERE ts < {T}
),
offers AS (
    SELECT customer_id, ts, offer_id,
           coalesce(accepted, FALSE) AND coalesce(responded_ts, ts + INTERVAL {window} DAY) < {T} AS accepted,
           CASE WHEN coalesce(responded_ts, ts + INTERVAL {window} DAY) < {T} THEN revenue END AS revenue,
           {days_ts} AS days_ago
    FROM main.offers WHERE ts < {T} AND offer_id <> 'none'
)
"""


def _sources(t: str, response_window_days: int) -> str:
    return _SOURCES_SQL.format(
        T=t, days_ts=_days_ago(t), days_signup=_days_ago(t, "signup_ts"), window=int(response_window_days)
    )


# Known customers at T (CONTRACT §2): a transaction before T (any amount: zero and returns too), or a customers row
# signed up before T or (with {keep_undated}) without a sign-up time; {keep_cancelled} decides about those whose
# churn_ts is before T.
_POPULATION_SQL = """
SELECT DISTINCT customer_id FROM (
    SELECT customer_id FROM transactions WHERE ts < {T}
    UNION ALL
    SELECT customer_id FROM customers WHERE signup_ts < {T} OR ({keep_undated} AND signup_ts IS NULL)
) known
WHERE {keep_cancelled} OR customer_id NOT IN (SELECT customer_id FROM customers WHERE churn_ts < {T})
"""


def population_query(as_of: datetime, include_cancelled: bool = True, include_undated: bool = True) -> str:
    """SQL for the known customers at ``as_of`` (CONTRACT §2), one ``customer_id`` each.

    Args:
        as_of: Cut-off T.
        include_cancelled: Keep customers whose ``churn_ts`` is before T. They are answered (as already churned) but
            have nothing left to predict, so the churn and CLTV labels (the training population) leave them out.
        include_undated: Keep ``customers`` rows without ``signup_ts`` and without a transaction before T. The
            customers file is a list as of extraction: at an earlier training cut-off it also names customers who
            joined later (online retail, Complete Journey), so the labels count such a row only from its first
            transaction; the answers (features at the latest T) include it.
    """
    return _POPULATION_SQL.format(
        T=sql_ts(as_of),
        keep_cancelled="TRUE" if include_cancelled else "FALSE",
        keep_undated="TRUE" if include_undated else "FALSE",
    )


def feature_query(
    as_of: datetime,
    attributes: list[str],
    numeric_attributes: frozenset[str] = frozenset(),
    response_window_days: int = RESPONSE_WINDOW_DAYS,
) -> str:
    """The full SQL for the feature table at ``as_of``: one row per known customer (cancelled ones included).

    Args:
        as_of: Cut-off T; only rows with ``ts < T`` are read.
        attributes: Static attribute columns of ``customers`` to append as ``attr_<name>``.
        numeric_attributes: Those of ``attributes`` that are numeric: cast to DOUBLE like every feature.
        response_window_days: When an offer's outcome counts as known without ``responded_ts``.

    Returns:
        SQL text; columns ``customer_id``, every feature of :func:`registry` in order, then the attributes.
    """
    t = sql_ts(as_of)
    feats = registry()
    by_source: dict[str, list[Feature]] = {}
    for feat in feats:
        by_source.setdefault(feat.source, []).append(feat)
    ctes = [_sources(t, response_window_days).strip(), f"pop AS ({population_query(as_of).strip()})"]
    joins = []
    for source, items in by_source.items():
        if source == "derived":
            continue
        cols = ", ".join(f"{it.sql} AS {it.name}" for it in items)
        ctes.append(f"agg_{source} AS (SELECT customer_id, {cols} FROM {source} GROUP BY customer_id)")
        joins.append(f"LEFT JOIN agg_{source} USING (customer_id)")
    base_cols = []
    for feat in feats:
        if feat.source == "derived":
            continue
        base_cols.append(f"coalesce({feat.name}, 0) AS {feat.name}" if feat.fill_zero else feat.name)
    attr_cols = [
        f"CAST(c.{quote_ident(a)} AS DOUBLE) AS {quote_ident('attr_' + a)}"
        if a in numeric_attributes
        else f"c.{quote_ident(a)} AS {quote_ident('attr_' + a)}"
        for a in attributes
    ]
    ctes.append(
        "base AS (SELECT pop.customer_id, "
        + ", ".join(base_cols + attr_cols)
        + " FROM pop "
        + " ".join(joins)
        + " LEFT JOIN customers c ON c.customer_id = pop.customer_id)"
    )
    outer = [
        "customer_id",
        # Parallel float sums differ in the last bits between runs; rounding makes features reproducible.
        *(
            f"round(CAST({f.sql} AS DOUBLE), 6) AS {f.name}"
            if f.source == "derived"
            else f"round(CAST({f.name} AS DOUBLE), 6) AS {f.name}"
            for f in feats
        ),
        *(quote_ident("attr_" + a) for a in attributes),
    ]
    return "WITH " + ",\n".join(ctes) + "\nSELECT " + ", ".join(outer) + " FROM base ORDER BY customer_id"
