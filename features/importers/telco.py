"""Importer for the IBM Telco Customer Churn snapshot (``ibm_telco_churn/telco_customer_churn.parquet``).

The file is a snapshot with one row per customer and no dates. The importer assumes a nominal snapshot
date of 2024-01-01 00:00 and 30-day months.

Mapping:

* ``customers``: ``customer_id`` = ``customerID``; ``signup_ts`` = snapshot − ``tenure`` × 30 days (tenure 0,
  i.e. joined this month, → snapshot − 15 days); ``churn_ts`` = snapshot − 15 days when ``Churn == "Yes"``
  (the customer left "within the last month"), else null. Every other column except ``Churn``, ``tenure`` and
  ``customerID`` is a static attribute. ``TotalCharges`` is converted to float (the 11 blank ``" "`` values,
  all tenure-0 customers, become NaN); ``SeniorCitizen`` stays numeric (0/1).
* ``transactions`` — **derived from ``tenure`` and ``MonthlyCharges``, not observed**: one monthly charge per
  customer at ``signup_ts + k × 30 days`` (k = 0, 1, ...) while the charge date is before ``churn_ts`` (or the
  snapshot for customers who stayed), ``amount`` = ``MonthlyCharges`` (the current price applied to the whole
  history, so it does not add up to ``TotalCharges``), ``order_id`` = ``f"{customer_id}-{k}"``, ``channel`` =
  ``"web"``. With these rules every customer gets ``max(tenure, 1)`` charges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FILE_NAME = "telco_customer_churn.parquet"
#: Nominal snapshot date (assumption: the data has no dates).
SNAPSHOT = pd.Timestamp("2024-01-01 00:00:00")
MONTH = pd.Timedelta(days=30)
HALF_MONTH = pd.Timedelta(days=15)
CHANNEL = "web"


def load(source: Path) -> dict[str, pd.DataFrame]:
    """Read the Telco folder and return its canonical tables.

    Args:
        source: The data set folder holding ``telco_customer_churn.parquet``.

    Returns:
        ``{"customers": ..., "transactions": ...}`` as canonical tables.

    Raises:
        FileNotFoundError: When the folder or ``telco_customer_churn.parquet`` is missing.
        ValueError: When ``TotalCharges`` holds a non-blank value that is not a number.
    """
    path = Path(source) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"telco: expected file {path} does not exist")
    raw = pd.read_parquet(path).reset_index(drop=True)

    customer_id = raw["customerID"].astype("string")
    tenure = raw["tenure"].astype("int64")
    signup_ts = SNAPSHOT - tenure * MONTH
    signup_ts = signup_ts.where(tenure > 0, SNAPSHOT - HALF_MONTH).astype("datetime64[ns]")
    churned = raw["Churn"].astype("string").str.strip().eq("Yes").fillna(False).astype(bool)
    churn_ts = pd.Series(SNAPSHOT - HALF_MONTH, index=raw.index).astype("datetime64[ns]").where(churned)

    total = raw["TotalCharges"].astype("string").str.strip()
    total_charges = pd.to_numeric(total.mask(total == ""), errors="raise").astype("float64")

    attributes = raw.drop(columns=["customerID", "Churn", "tenure"])
    attributes["TotalCharges"] = total_charges
    for col in attributes.columns:
        if not pd.api.types.is_numeric_dtype(attributes[col]):
            attributes[col] = attributes[col].astype("string")
    customers = pd.concat(
        [pd.DataFrame({"customer_id": customer_id, "signup_ts": signup_ts, "churn_ts": churn_ts}), attributes],
        axis=1,
    )

    end_ts = churn_ts.fillna(SNAPSHOT)
    span_days = (end_ts - signup_ts).dt.total_seconds().to_numpy() / 86400.0
    n_charges = np.clip(np.ceil(span_days / MONTH.days), 0, None).astype(np.int64)
    starts = np.repeat(np.cumsum(n_charges) - n_charges, n_charges)
    k = np.arange(int(n_charges.sum()), dtype=np.int64) - starts
    rows = np.repeat(np.arange(len(raw)), n_charges)

    tx_customer = customer_id.to_numpy()[rows]
    transactions = pd.DataFrame(
        {
            "customer_id": pd.Series(tx_customer, dtype="string"),
            "ts": pd.Series(signup_ts.to_numpy()[rows] + k * np.timedelta64(MONTH.days, "D")).astype("datetime64[ns]"),
            "amount": raw["MonthlyCharges"].astype("float64").to_numpy()[rows],
            "order_id": (pd.Series(tx_customer, dtype="string") + "-" + pd.Series(k).astype("string")),
        }
    )
    index = transactions.index
    transactions = transactions.assign(
        product_id=pd.Series(pd.NA, index=index, dtype="string"),
        category=pd.Series(pd.NA, index=index, dtype="string"),
        quantity=pd.Series(float("nan"), index=index, dtype="float64"),
        channel=pd.Series(CHANNEL, index=index, dtype="string"),
    )

    return {"transactions": transactions, "customers": customers}
