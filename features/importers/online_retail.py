"""Importer for the UCI "Online Retail" data set (``uci_online_retail/online_retail.parquet``).

Mapping (one output row per invoice line, source order kept):

* ``transactions``: ``customer_id`` = ``str(int(CustomerID))`` or null when the line has no customer
  (135,080 lines); ``ts`` = ``InvoiceDate`` (UK local time, taken as naive UTC); ``amount`` =
  ``Quantity * UnitPrice``; ``order_id`` = ``InvoiceNo``; ``product_id`` = ``StockCode``; ``category`` is
  null (the data has no product category); ``quantity`` = ``Quantity``; ``channel`` = ``"web"`` (a non-store
  online retailer).
* ``customers``: one row per non-null customer id, with the static attribute ``country`` = the customer's most
  frequent ``Country`` over their lines (ties broken by the alphabetically first country). There is no signup
  or cancellation date, so ``signup_ts``/``churn_ts`` are omitted.

Assumptions and odd rows:

* Cancellation invoices (``InvoiceNo`` starting with ``C``) are returns: their ``amount`` and ``quantity`` are
  forced negative (``-abs``). In the published file every such line already has a negative ``Quantity``, so
  this only guards against a differently prepared copy.
* Everything else is kept as is: lines without a customer (null ``customer_id``), zero prices (amount 0),
  the three ``A`` "Adjust bad debt" lines (two with a negative price), and non-product stock codes
  (``POST``, ``M``, ``BANK CHARGES``, ...). The loader counts and handles them; nothing is dropped here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FILE_NAME = "online_retail.parquet"
CHANNEL = "web"


def load(source: Path) -> dict[str, pd.DataFrame]:
    """Read the Online Retail folder and return its canonical tables.

    Args:
        source: The data set folder holding ``online_retail.parquet``.

    Returns:
        ``{"transactions": ..., "customers": ...}`` as canonical tables.

    Raises:
        FileNotFoundError: When the folder or ``online_retail.parquet`` is missing.
    """
    path = Path(source) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"online-retail: expected file {path} does not exist")
    raw = pd.read_parquet(
        path, columns=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
    )

    customer_id = raw["CustomerID"].astype("Int64").astype("string")
    quantity = raw["Quantity"].astype("float64")
    amount = quantity * raw["UnitPrice"].astype("float64")
    cancelled = raw["InvoiceNo"].str.startswith("C").fillna(False).to_numpy(dtype=bool)
    amount = amount.where(~cancelled, -amount.abs())
    quantity = quantity.where(~cancelled, -quantity.abs())

    transactions = pd.DataFrame(
        {
            "customer_id": customer_id,
            "ts": raw["InvoiceDate"].astype("datetime64[ns]"),
            "amount": amount,
            "order_id": raw["InvoiceNo"].astype("string"),
            "product_id": raw["StockCode"].astype("string"),
            "category": pd.Series(pd.NA, index=raw.index, dtype="string"),
            "quantity": quantity,
            "channel": pd.Series(CHANNEL, index=raw.index, dtype="string"),
        }
    )

    lines = pd.DataFrame({"customer_id": customer_id, "country": raw["Country"].astype("string")}).dropna(
        subset=["customer_id"]
    )
    counts = lines.groupby(["customer_id", "country"], observed=True).size().rename("n").reset_index()
    counts = counts.sort_values(["customer_id", "n", "country"], ascending=[True, False, True], kind="stable")
    customers = counts.drop_duplicates("customer_id", keep="first")[["customer_id", "country"]]
    customers = customers.reset_index(drop=True).astype({"customer_id": "string", "country": "string"})

    return {"transactions": transactions, "customers": customers}
