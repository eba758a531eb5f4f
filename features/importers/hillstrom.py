"""Importer for the Hillstrom MineThatData e-mail campaign (``hillstrom_email/hillstrom.parquet``).

The file has one row per customer, no customer id and no dates. The importer therefore assumes:

* ``customer_id`` = ``f"h{row_index:05d}"`` (``h00000`` ... ``h63999``, in file order);
* a nominal campaign date of 2008-03-01 00:00 (the challenge was published in March 2008).

Mapping:

* ``customers``: static attributes ``recency``, ``history_segment``, ``history``, ``mens``, ``womens``,
  ``zip_code``, ``newbie`` and ``purchase_channel`` (the source ``channel`` column, renamed so it is not
  mistaken for a transaction channel). No signup/cancellation dates: ``signup_ts``/``churn_ts`` are omitted.
* ``offers``: one row per customer. ``offer_id`` = ``mens_email`` / ``womens_email`` / ``none`` (the control
  arm, source segment ``"No E-Mail"``); ``ts`` = the campaign date; ``accepted`` = ``conversion == 1``;
  ``revenue`` = ``spend``; ``channel`` = ``"email"``; ``propensity`` = the share of that arm in the data
  (about 1/3 each: assignment was randomized).
* ``transactions`` — **derived, not observed** (the data has no transaction log; the table is required):
  one row per customer at ``campaign date - recency * 30 days`` with ``amount`` = ``history`` (the past
  year's spend summarised as one purchase at the last purchase date) and ``order_id`` = ``"<id>-hist"``;
  plus, for customers with ``spend > 0``, one row at ``campaign date + 7 days`` with ``amount`` = ``spend``
  and ``order_id`` = ``"<id>-post"``. ``channel`` = ``"web"``; product, category and quantity are null.
* ``interactions``: customers with ``visit == 1`` get one ``web`` ``session`` at ``campaign date + 3 days``
  (the real visit happened at an unknown time within the two weeks after the campaign).
* ``offer_catalog``: ``mens_email`` and ``womens_email`` with ``value`` = mean ``spend`` among converters in
  that arm and ``cost`` = 0.0 (e-mail is treated as free), ``eligible_if`` null. The control arm is not an
  offer that can be recommended, so it has no catalog row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.schema import CONTROL_OFFER

FILE_NAME = "hillstrom.parquet"
#: Nominal campaign date (assumption: the data has no dates).
CAMPAIGN_DATE = pd.Timestamp("2008-03-01 00:00:00")
#: Source ``segment`` → canonical ``offer_id``.
SEGMENT_OFFERS: dict[str, str] = {
    "Mens E-Mail": "mens_email",
    "Womens E-Mail": "womens_email",
    "No E-Mail": CONTROL_OFFER,
}
DAYS_PER_MONTH = 30
POST_PURCHASE_DAYS = 7
VISIT_DAYS = 3


def _const(value: object, index: pd.Index, dtype: str) -> pd.Series:
    return pd.Series(value, index=index, dtype=dtype)


def load(source: Path) -> dict[str, pd.DataFrame]:
    """Read the Hillstrom folder and return its canonical tables.

    Args:
        source: The data set folder holding ``hillstrom.parquet``.

    Returns:
        ``customers``, ``offers``, ``transactions``, ``interactions`` and ``offer_catalog``.

    Raises:
        FileNotFoundError: When the folder or ``hillstrom.parquet`` is missing.
        ValueError: When ``segment`` holds a value other than the three known arms.
    """
    path = Path(source) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"hillstrom: expected file {path} does not exist")
    raw = pd.read_parquet(path).reset_index(drop=True)

    customer_id = pd.Series([f"h{i:05d}" for i in range(len(raw))], index=raw.index, dtype="string")
    campaign_ts = pd.Series(CAMPAIGN_DATE, index=raw.index).astype("datetime64[ns]")

    customers = pd.DataFrame(
        {
            "customer_id": customer_id,
            "recency": raw["recency"],
            "history_segment": raw["history_segment"].astype("string"),
            "history": raw["history"].astype("float64"),
            "mens": raw["mens"],
            "womens": raw["womens"],
            "zip_code": raw["zip_code"].astype("string"),
            "newbie": raw["newbie"],
            "purchase_channel": raw["channel"].astype("string"),
        }
    )

    offer_id = raw["segment"].map(SEGMENT_OFFERS)
    if offer_id.isna().any():
        unknown = sorted(raw.loc[offer_id.isna(), "segment"].astype(str).unique())
        raise ValueError(f"hillstrom: unknown segment values {unknown}; expected {sorted(SEGMENT_OFFERS)}")
    offer_id = offer_id.astype("string")
    propensity = offer_id.map(offer_id.value_counts(normalize=True)).astype("float64")
    offers = pd.DataFrame(
        {
            "customer_id": customer_id,
            "ts": campaign_ts,
            "offer_id": offer_id,
            "accepted": raw["conversion"].eq(1).astype(bool),
            "revenue": raw["spend"].astype("float64"),
            "channel": _const("email", raw.index, "string"),
            "propensity": propensity,
        }
    )

    hist_ts = CAMPAIGN_DATE - pd.to_timedelta(raw["recency"].astype("int64") * DAYS_PER_MONTH, unit="D")
    hist = pd.DataFrame(
        {
            "customer_id": customer_id,
            "ts": hist_ts.astype("datetime64[ns]"),
            "amount": raw["history"].astype("float64"),
            "order_id": (customer_id + "-hist").astype("string"),
        }
    )
    buyers = raw["spend"] > 0
    post = pd.DataFrame(
        {
            "customer_id": customer_id[buyers],
            "ts": campaign_ts[buyers] + pd.Timedelta(days=POST_PURCHASE_DAYS),
            "amount": raw.loc[buyers, "spend"].astype("float64"),
            "order_id": (customer_id[buyers] + "-post").astype("string"),
        }
    )
    transactions = pd.concat([hist, post], ignore_index=True)
    transactions = transactions.assign(
        product_id=_const(pd.NA, transactions.index, "string"),
        category=_const(pd.NA, transactions.index, "string"),
        quantity=_const(float("nan"), transactions.index, "float64"),
        channel=_const("web", transactions.index, "string"),
    )
    transactions["ts"] = transactions["ts"].astype("datetime64[ns]")

    visited = raw["visit"] == 1
    interactions = pd.DataFrame(
        {
            "customer_id": customer_id[visited],
            "ts": campaign_ts[visited] + pd.Timedelta(days=VISIT_DAYS),
            "channel": _const("web", raw.index[visited], "string"),
            "event_type": _const("session", raw.index[visited], "string"),
            "value": _const(float("nan"), raw.index[visited], "float64"),
        }
    ).reset_index(drop=True)

    treated = [o for o in SEGMENT_OFFERS.values() if o != CONTROL_OFFER]
    converters = offers[offers["accepted"]]
    value = converters.groupby("offer_id", observed=True)["revenue"].mean().reindex(treated)
    index = pd.RangeIndex(len(treated))
    offer_catalog = pd.DataFrame(
        {
            "offer_id": pd.Series(treated, index=index, dtype="string"),
            "value": pd.Series(value.to_numpy(dtype="float64"), index=index),
            "cost": _const(0.0, index, "float64"),
            "eligible_if": _const(pd.NA, index, "string"),
        }
    )

    return {
        "transactions": transactions,
        "customers": customers,
        "interactions": interactions,
        "offers": offers,
        "offer_catalog": offer_catalog,
    }
