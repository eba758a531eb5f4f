"""Label definitions for a snapshot at cut-off T with horizon H (CONTRACT §2), as SQL text.

- Population: the known customers at T (CONTRACT §2) not cancelled before T (nothing left to predict for them),
  and a ``customers`` row without ``signup_ts`` only once it has a transaction before T (the customers file lists
  customers as of extraction, so at an earlier cut-off it names customers who had not joined yet).
- ``churned``: the customer made no purchase in ``[T, T+H)``; for contract data (known ``churn_ts``), the
  cancellation falls in ``[T, T+H)``.
- ``spend_h``: net amount spent in ``[T, T+H)``; ``orders_h``: purchases in that window.
- ``spend_cltv``: net amount spent in ``[T, T+CLTV horizon)``, with ``cltv_observed`` telling whether the data
  reaches that far (it is only a valid label where it does).
- Offer outcomes: the first offer (or control assignment) each customer got in ``[T, T+window)``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from features.definitions import population_query, sql_ts


def label_query(as_of: datetime, horizon_days: int, cltv_horizon_days: int, contract: bool) -> str:
    """SQL for the labels of the known, not yet cancelled customers at ``as_of``.

    Args:
        as_of: Cut-off T.
        horizon_days: Horizon H for churn and spend.
        cltv_horizon_days: Horizon of the long-run value label.
        contract: Whether churn comes from ``customers.churn_ts``.
    """
    t = sql_ts(as_of)
    h_end = sql_ts(as_of + timedelta(days=horizon_days))
    c_end = sql_ts(as_of + timedelta(days=cltv_horizon_days))
    churn = (
        f"coalesce(c.churn_ts >= {t} AND c.churn_ts < {h_end}, FALSE)" if contract else "coalesce(f.orders_h, 0) = 0"
    )
    return f"""
        WITH pop AS ({population_query(as_of, include_cancelled=False, include_undated=False)}),
        future AS (
            SELECT customer_id,
                   sum(CASE WHEN ts < {h_end} THEN amount ELSE 0 END) AS spend_h,
                   count(DISTINCT CASE WHEN ts < {h_end} AND amount > 0
                         THEN coalesce(order_id, CAST(ts AS VARCHAR)) END) AS orders_h,
                   sum(amount) AS spend_cltv
            FROM transactions WHERE ts >= {t} AND ts < {c_end}
            GROUP BY customer_id
        )
        SELECT pop.customer_id,
               CAST({churn} AS INTEGER) AS churned,
               round(CAST(coalesce(f.spend_h, 0) AS DOUBLE), 6) AS spend_h,
               CAST(coalesce(f.orders_h, 0) AS INTEGER) AS orders_h,
               round(CAST(coalesce(f.spend_cltv, 0) AS DOUBLE), 6) AS spend_cltv,
               (SELECT max(ts) FROM transactions) >= {c_end} - INTERVAL 1 DAY AS cltv_observed
        FROM pop
        LEFT JOIN future f USING (customer_id)
        LEFT JOIN customers c USING (customer_id)
        ORDER BY pop.customer_id
    """


def offer_outcome_query(as_of: datetime, window_days: int) -> str:
    """SQL for the first offer (or control assignment) per customer in ``[T, T + window)`` and its outcome."""
    t = sql_ts(as_of)
    end = sql_ts(as_of + timedelta(days=window_days))
    return f"""
        SELECT customer_id, ts AS offer_ts, offer_id,
               CAST(coalesce(accepted, FALSE) AS INTEGER) AS accepted,
               CAST(coalesce(revenue, 0) AS DOUBLE) AS revenue,
               propensity
        FROM offers
        WHERE ts >= {t} AND ts < {end}
        QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY ts, offer_id) = 1
        ORDER BY customer_id
    """
