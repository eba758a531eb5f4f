"""Importer for dunnhumby / 84.51° "The Complete Journey" (``dunnhumby_complete_journey/``).

Mapping:

* ``transactions`` (from ``transactions.parquet``, one row per line item, source order kept):
  ``customer_id`` = ``str(household_id)``; ``ts`` = ``transaction_timestamp``; ``amount`` = ``sales_value``;
  ``order_id`` = ``str(basket_id)``; ``product_id`` = ``str(product_id)``; ``category`` = the product's
  ``department`` from ``products.parquet`` (null for the ~0.3% of line items whose product is not in the
  product table); ``quantity`` = ``quantity``; ``channel`` = ``"store"`` (grocery store purchases).
* ``customers``: every household seen in the transactions, with the ``demographics.parquet`` columns (``age``,
  ``income``, ``home_ownership``, ``marital_status``, ``household_size``, ``household_comp``, ``kids_count``,
  all strings) as static attributes, null for the households without demographics. No signup or
  cancellation dates exist, so ``signup_ts``/``churn_ts`` are omitted.
* ``offers``: one row per (campaign, household) in ``campaigns.parquet``. ``ts`` = the campaign's
  ``start_date`` (``campaign_descriptions.parquet``); ``offer_id`` = ``campaign_type_a``/``_b``/``_c`` from
  ``campaign_type`` (``"Type A"``/``"Type B"``/``"Type C"``); ``accepted`` = the household redeemed at least one
  coupon of that campaign (``coupon_redemptions.campaign_id``) with ``start_date <= redemption_date <=
  end_date`` (both ends inclusive; dates are day-level); ``revenue`` and ``propensity`` are null;
  ``channel`` = ``"mail"`` (direct-mail campaigns).
* ``offer_catalog``: one row per offer id with nominal ``value`` = 10.0 and ``cost`` = 0.5 (assumptions: the
  data has no margin or contact cost), ``eligible_if`` null.

Caveats: the campaigns are targeted, not randomized, and there is **no control arm** (no ``"none"`` offers):
models on this data can only estimate acceptance propensity, not uplift. Three campaigns start in late 2016,
before the first transaction (147 offer rows), and campaign 15 ends after the last one. Campaigns 11/12 and 21/22
share type and start date, so a household targeted by both would get two offer rows with the same (customer, ts,
offer_id); no household is in this copy. Zero-valued line items are kept.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FILES = (
    "transactions.parquet",
    "products.parquet",
    "demographics.parquet",
    "campaigns.parquet",
    "campaign_descriptions.parquet",
    "coupon_redemptions.parquet",
)
CHANNEL = "store"
OFFER_CHANNEL = "mail"
#: Nominal value of an accepted campaign offer and contact cost per offer (assumptions, not in the data).
OFFER_VALUE = 10.0
OFFER_COST = 0.5


def _read(source: Path, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    path = source / name
    if not path.is_file():
        raise FileNotFoundError(f"complete-journey: expected file {path} does not exist")
    return pd.read_parquet(path, columns=columns)


def _offer_id(campaign_type: pd.Series) -> pd.Series:
    """Map ``"Type A"`` → ``"campaign_type_a"`` (and so on)."""
    letter = campaign_type.astype("string").str.strip().str.replace(r"^Type\s+", "", regex=True).str.lower()
    return ("campaign_type_" + letter).astype("string")


def load(source: Path) -> dict[str, pd.DataFrame]:
    """Read the Complete Journey folder and return its canonical tables.

    Args:
        source: The data set folder holding the Complete Journey Parquet files.

    Returns:
        ``transactions``, ``customers``, ``offers`` and ``offer_catalog`` as canonical tables.

    Raises:
        FileNotFoundError: When the folder or one of the needed files is missing.
    """
    source = Path(source)
    for name in FILES:
        if not (source / name).is_file():
            raise FileNotFoundError(f"complete-journey: expected file {source / name} does not exist")

    tx = _read(
        source,
        "transactions.parquet",
        ["household_id", "basket_id", "product_id", "quantity", "sales_value", "transaction_timestamp"],
    )
    products = _read(source, "products.parquet", ["product_id", "department"])
    department = products.drop_duplicates("product_id").set_index("product_id")["department"]

    transactions = pd.DataFrame(
        {
            "customer_id": tx["household_id"].astype("string"),
            "ts": tx["transaction_timestamp"].astype("datetime64[ns]"),
            "amount": tx["sales_value"].astype("float64"),
            "order_id": tx["basket_id"].astype("string"),
            "product_id": tx["product_id"].astype("string"),
            "category": tx["product_id"].map(department).astype("string"),
            "quantity": tx["quantity"].astype("float64"),
            "channel": pd.Series(CHANNEL, index=tx.index, dtype="string"),
        }
    )

    demographics = _read(source, "demographics.parquet")
    households = pd.DataFrame({"household_id": pd.unique(tx["household_id"])}).sort_values("household_id")
    customers = households.merge(demographics, on="household_id", how="left")
    customers.insert(0, "customer_id", customers.pop("household_id").astype("string"))
    customers = customers.reset_index(drop=True)
    attr_cols = [c for c in customers.columns if c != "customer_id"]
    customers[attr_cols] = customers[attr_cols].astype("string")

    campaigns = _read(source, "campaigns.parquet", ["campaign_id", "household_id"])
    descriptions = _read(source, "campaign_descriptions.parquet")
    redemptions = _read(source, "coupon_redemptions.parquet", ["household_id", "campaign_id", "redemption_date"])
    targeted = campaigns.merge(descriptions, on="campaign_id", how="left", validate="many_to_one")
    in_window = redemptions.merge(descriptions, on="campaign_id", how="inner")
    in_window = in_window[
        (in_window["redemption_date"] >= in_window["start_date"])
        & (in_window["redemption_date"] <= in_window["end_date"])
    ]
    redeemed = in_window[["campaign_id", "household_id"]].drop_duplicates().assign(_redeemed=True)
    targeted = targeted.merge(redeemed, on=["campaign_id", "household_id"], how="left")

    offer_id = _offer_id(targeted["campaign_type"])
    offers = pd.DataFrame(
        {
            "customer_id": targeted["household_id"].astype("string"),
            "ts": targeted["start_date"].astype("datetime64[ns]"),
            "offer_id": offer_id,
            "accepted": targeted["_redeemed"].notna().astype(bool),
            "revenue": pd.Series(float("nan"), index=targeted.index, dtype="float64"),
            "channel": pd.Series(OFFER_CHANNEL, index=targeted.index, dtype="string"),
            "propensity": pd.Series(float("nan"), index=targeted.index, dtype="float64"),
        }
    )

    catalog_ids = sorted(_offer_id(descriptions["campaign_type"]).dropna().unique())
    offer_catalog = pd.DataFrame(
        {
            "offer_id": pd.Series(catalog_ids, dtype="string"),
            "value": pd.Series(OFFER_VALUE, index=range(len(catalog_ids)), dtype="float64"),
            "cost": pd.Series(OFFER_COST, index=range(len(catalog_ids)), dtype="float64"),
            "eligible_if": pd.Series(pd.NA, index=range(len(catalog_ids)), dtype="string"),
        }
    )

    return {
        "transactions": transactions,
        "customers": customers,
        "offers": offers,
        "offer_catalog": offer_catalog,
    }
