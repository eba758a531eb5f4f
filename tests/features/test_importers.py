"""Importers on the real public data sets, and run_import's atomic writes.

Expected numbers come from the data set READMEs and from plain pandas over the raw files, not from the
importers' own output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
if not DATASETS.is_dir():
    pytest.skip("../shared/datasets not present: importer tests need the public datasets", allow_module_level=True)

from features import importers  # noqa: E402
from features.importers import IMPORTERS, run_import  # noqa: E402
from features.schema import (  # noqa: E402
    CONTROL_OFFER,
    EVENT_TYPES,
    INTERACTION_CHANNELS,
    TABLES,
    TRANSACTION_CHANNELS,
)

pytestmark = pytest.mark.shared

RETAIL = DATASETS / "uci_online_retail"
JOURNEY = DATASETS / "dunnhumby_complete_journey"
HILLSTROM = DATASETS / "hillstrom_email"
TELCO = DATASETS / "ibm_telco_churn"


def assert_canonical(tables: dict[str, pd.DataFrame]) -> None:
    """Every table is known, has its required columns, and each known column has the spec's type."""
    for name, frame in tables.items():
        spec = TABLES[name]
        assert set(spec.required_columns) <= set(frame.columns), name
        if not spec.keep_extra:
            assert set(frame.columns) <= {c.name for c in spec.columns}, name
        for col in spec.columns:
            if col.name not in frame.columns:
                continue
            s = frame[col.name]
            if col.kind == "string":
                assert pd.api.types.is_string_dtype(s), (name, col.name, s.dtype)
                if col.name == "customer_id":
                    assert not s.dropna().str.endswith(".0").any(), name
            elif col.kind == "timestamp":
                assert pd.api.types.is_datetime64_dtype(s), (name, col.name, s.dtype)
                assert getattr(s.dt, "tz", None) is None
            elif col.kind == "number":
                assert s.dtype == np.float64 or pd.api.types.is_integer_dtype(s), (name, col.name, s.dtype)
            elif col.kind == "bool":
                assert s.dtype == bool, (name, col.name, s.dtype)
        if "customer_id" in frame.columns and name == "customers":
            assert frame["customer_id"].is_unique and frame["customer_id"].notna().all()


# --------------------------------------------------------------------------- online-retail


@pytest.fixture(scope="module")
def retail() -> dict[str, pd.DataFrame]:
    return IMPORTERS["online-retail"](RETAIL)


@pytest.fixture(scope="module")
def retail_raw() -> pd.DataFrame:
    return pd.read_parquet(RETAIL / "online_retail.parquet")


def test_online_retail_transactions(retail: dict[str, pd.DataFrame], retail_raw: pd.DataFrame) -> None:
    assert set(retail) == {"transactions", "customers"}
    assert_canonical(retail)
    tx = retail["transactions"]
    assert len(tx) == 541_909  # README: every invoice line is kept
    assert tx["customer_id"].isna().sum() == 135_080  # lines without a customer stay, with a null id
    assert tx["customer_id"].nunique() == 4_372
    assert set(tx["channel"].unique()) == {"web"} <= set(TRANSACTION_CHANNELS)
    assert tx["category"].isna().all()

    cancel = tx["order_id"].str.startswith("C")
    assert cancel.sum() == 9_288
    assert (tx.loc[cancel, "amount"] < 0).all()
    # 9,288 cancellation lines + 2 "Adjust bad debt" lines with a negative price
    assert (tx["amount"] < 0).sum() == 9_290
    assert (tx["amount"] == 0).sum() == (retail_raw["UnitPrice"] == 0).sum() == 2_515
    assert tx["amount"].sum() == pytest.approx((retail_raw["Quantity"] * retail_raw["UnitPrice"]).sum())
    assert tx["ts"].min() == pd.Timestamp("2010-12-01 08:26:00")
    assert tx["ts"].max() == pd.Timestamp("2011-12-09 12:50:00")

    # Customer 12346 bought 74,215 units at 1.04 and cancelled the whole order.
    c = tx[tx["customer_id"] == "12346"].sort_values("ts")
    assert c["order_id"].tolist() == ["541431", "C541433"]
    assert c["amount"].tolist() == pytest.approx([77_183.6, -77_183.6])
    assert c["quantity"].tolist() == [74_215, -74_215]
    assert c["product_id"].iloc[0] == "23166"


def test_online_retail_customers(retail: dict[str, pd.DataFrame], retail_raw: pd.DataFrame) -> None:
    customers = retail["customers"].set_index("customer_id")
    assert len(customers) == 4_372
    assert "signup_ts" not in customers or customers["signup_ts"].isna().all()
    assert customers.loc["12346", "country"] == "United Kingdom"
    # Customers seen in two countries get the more frequent one (counted by hand from the raw lines).
    assert customers.loc["12370", "country"] == "Cyprus"  # 159 Cyprus vs 8 Austria
    assert customers.loc["12431", "country"] == "Australia"  # 186 vs 54 Belgium
    assert customers.loc["12457", "country"] == "Switzerland"  # 65 vs 3 Cyprus
    # Every other customer has a single country: compare against first-seen country.
    first = retail_raw.dropna(subset=["CustomerID"]).drop_duplicates("CustomerID")
    first = first.set_index(first["CustomerID"].astype(int).astype(str))["Country"]
    differs = customers["country"] != first.reindex(customers.index)
    assert differs.sum() <= 8


# --------------------------------------------------------------------------- complete-journey


@pytest.fixture(scope="module")
def journey() -> dict[str, pd.DataFrame]:
    return IMPORTERS["complete-journey"](JOURNEY)


def test_complete_journey_transactions(journey: dict[str, pd.DataFrame]) -> None:
    assert set(journey) == {"transactions", "customers", "offers", "offer_catalog"}
    assert_canonical(journey)
    tx = journey["transactions"]
    assert len(tx) == 1_469_307
    assert tx["customer_id"].nunique() == 2_469
    assert set(tx["channel"].unique()) == {"store"}
    raw = pd.read_parquet(JOURNEY / "transactions.parquet", columns=["sales_value", "product_id"])
    assert tx["amount"].sum() == pytest.approx(raw["sales_value"].sum())
    products = pd.read_parquet(JOURNEY / "products.parquet", columns=["product_id", "department"])
    assert tx["category"].isna().sum() == (~raw["product_id"].isin(products["product_id"])).sum()
    assert tx["category"].notna().mean() > 0.99
    first = tx.iloc[0]
    assert (first["customer_id"], first["ts"], first["amount"]) == ("900", pd.Timestamp("2017-01-01 11:53:26"), 0.5)
    assert (first["order_id"], first["product_id"], first["category"]) == ("31198570044", "1095275", "PASTRY")


def test_complete_journey_customers(journey: dict[str, pd.DataFrame]) -> None:
    customers = journey["customers"].set_index("customer_id")
    assert len(customers) == 2_469
    demo = pd.read_parquet(JOURNEY / "demographics.parquet")
    assert set(demo.columns) - {"household_id"} <= set(customers.columns)
    assert customers["age"].notna().sum() == 801
    assert customers.loc["1", ["age", "income", "household_comp"]].tolist() == ["65+", "35-49K", "2 Adults No Kids"]
    assert customers.loc["2"].isna().all()  # household 2 has no demographics


def test_complete_journey_offers(journey: dict[str, pd.DataFrame]) -> None:
    offers = journey["offers"]
    assert len(offers) == 6_589  # one row per (campaign, household)
    assert offers["customer_id"].nunique() == 1_559
    assert offers["offer_id"].value_counts().to_dict() == {
        "campaign_type_a": 3_647,
        "campaign_type_b": 2_368,
        "campaign_type_c": 574,
    }
    assert CONTROL_OFFER not in set(offers["offer_id"])  # no control arm in this data
    redemptions = pd.read_parquet(JOURNEY / "coupon_redemptions.parquet")
    # All 2,102 redemptions fall inside their campaign's window: 792 distinct (campaign, household) pairs.
    assert offers["accepted"].sum() == len(redemptions[["campaign_id", "household_id"]].drop_duplicates()) == 792
    assert offers["revenue"].isna().all() and offers["propensity"].isna().all()
    assert set(offers["channel"]) == {"mail"}
    # Campaign 1 (Type B) starts 2017-03-03 and targets household 105 first.
    assert offers.iloc[0][["customer_id", "ts", "offer_id"]].tolist() == [
        "105",
        pd.Timestamp("2017-03-03"),
        "campaign_type_b",
    ]
    catalog = journey["offer_catalog"]
    assert catalog["offer_id"].tolist() == ["campaign_type_a", "campaign_type_b", "campaign_type_c"]
    assert (catalog["value"] == 10.0).all() and (catalog["cost"] == 0.5).all()
    assert catalog["eligible_if"].isna().all()


# --------------------------------------------------------------------------- hillstrom


@pytest.fixture(scope="module")
def hill() -> dict[str, pd.DataFrame]:
    return IMPORTERS["hillstrom"](HILLSTROM)


def test_hillstrom(hill: dict[str, pd.DataFrame]) -> None:
    assert set(hill) == {"transactions", "customers", "interactions", "offers", "offer_catalog"}
    assert_canonical(hill)
    raw = pd.read_parquet(HILLSTROM / "hillstrom.parquet")
    campaign = pd.Timestamp("2008-03-01")

    customers = hill["customers"]
    assert len(customers) == 64_000
    assert customers["customer_id"].iloc[[0, -1]].tolist() == ["h00000", "h63999"]
    assert "purchase_channel" in customers and "channel" not in customers
    assert customers["purchase_channel"].value_counts()["Web"] == 28_217

    offers = hill["offers"]
    assert offers["offer_id"].value_counts().to_dict() == {"womens_email": 21_387, "mens_email": 21_307, "none": 21_306}
    assert offers["accepted"].sum() == 578
    assert offers["revenue"].sum() == pytest.approx(raw["spend"].sum())
    assert (offers["ts"] == campaign).all() and set(offers["channel"]) == {"email"}
    assert offers.loc[offers["offer_id"] == CONTROL_OFFER, "propensity"].iloc[0] == pytest.approx(21_306 / 64_000)
    # Mean spend per customer in the mens arm, from the README: 1.4226.
    assert offers.loc[offers["offer_id"] == "mens_email", "revenue"].mean() == pytest.approx(1.4226, abs=1e-4)

    tx = hill["transactions"]
    assert len(tx) == 64_000 + 578  # one history row each + one post-campaign row per buyer
    first = tx[tx["customer_id"] == "h00000"]  # recency 10, history 142.44, no spend
    assert first[["ts", "amount", "order_id"]].values.tolist() == [
        [campaign - pd.Timedelta(days=300), 142.44, "h00000-hist"]
    ]
    post = tx[tx["order_id"].str.endswith("-post")]
    assert (post["ts"] == campaign + pd.Timedelta(days=7)).all()
    assert post["amount"].sum() == pytest.approx(raw["spend"].sum())
    assert set(tx["channel"]) == {"web"}

    inter = hill["interactions"]
    assert len(inter) == raw["visit"].sum() == 9_394
    assert set(inter["channel"]) <= set(INTERACTION_CHANNELS) and set(inter["event_type"]) <= set(EVENT_TYPES)
    assert (inter["ts"] == campaign + pd.Timedelta(days=3)).all()

    catalog = hill["offer_catalog"].set_index("offer_id")
    assert sorted(catalog.index) == ["mens_email", "womens_email"]
    assert catalog.loc["mens_email", "value"] == pytest.approx(113.5269, abs=1e-3)
    assert catalog.loc["womens_email", "value"] == pytest.approx(121.8948, abs=1e-3)
    assert (catalog["cost"] == 0.0).all()


# --------------------------------------------------------------------------- telco


@pytest.fixture(scope="module")
def telco() -> dict[str, pd.DataFrame]:
    return IMPORTERS["telco"](TELCO)


def test_telco(telco: dict[str, pd.DataFrame]) -> None:
    assert set(telco) == {"transactions", "customers"}
    assert_canonical(telco)
    raw = pd.read_parquet(TELCO / "telco_customer_churn.parquet")
    snapshot = pd.Timestamp("2024-01-01")

    customers = telco["customers"].set_index("customer_id")
    assert len(customers) == 7_043
    assert not {"Churn", "tenure", "customerID"} & set(customers.columns)
    assert customers["churn_ts"].notna().sum() == 1_869
    assert (customers["churn_ts"].dropna() == snapshot - pd.Timedelta(days=15)).all()
    assert customers["TotalCharges"].dtype == np.float64 and customers["TotalCharges"].isna().sum() == 11
    assert pd.api.types.is_integer_dtype(customers["SeniorCitizen"])
    assert customers.loc["5575-GNVDE", "signup_ts"] == snapshot - pd.Timedelta(days=34 * 30)
    assert customers.loc["5575-GNVDE", "TotalCharges"] == 1889.5
    tenure0 = raw.loc[raw["tenure"] == 0, "customerID"]
    assert (customers.loc[tenure0, "signup_ts"] == snapshot - pd.Timedelta(days=15)).all()

    tx = telco["transactions"]
    # Every customer is charged max(tenure, 1) times: 11 tenure-0 customers and no tenure-0 churner.
    assert len(tx) == raw["tenure"].clip(lower=1).sum() == 228_001
    per_customer = tx.groupby("customer_id").size()
    expected = raw.set_index("customerID")["tenure"].clip(lower=1)
    assert (per_customer.reindex(expected.index) == expected).all()
    assert tx["amount"].sum() == pytest.approx((raw["MonthlyCharges"] * raw["tenure"].clip(lower=1)).sum())
    assert tx["ts"].max() < snapshot
    # 3668-QPYBK: tenure 2, churned → charged at signup (2023-11-02) and 30 days later, before churn (12-17).
    c = tx[tx["customer_id"] == "3668-QPYBK"]
    assert c["ts"].tolist() == [pd.Timestamp("2023-11-02"), pd.Timestamp("2023-12-02")]
    assert c["order_id"].tolist() == ["3668-QPYBK-0", "3668-QPYBK-1"]
    assert c["amount"].tolist() == [53.85, 53.85]
    churn_ts = customers["churn_ts"].reindex(tx["customer_id"]).to_numpy()
    churned = ~pd.isna(churn_ts)
    assert (tx["ts"].to_numpy()[churned] < churn_ts[churned]).all()


# --------------------------------------------------------------------------- run_import


def _leftovers(parent: Path, out: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{out.name}.tmp-")]


class _Exploding:
    """A table whose write fails, as a full disk would."""

    def __len__(self) -> int:
        return 1

    def to_parquet(self, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")


def _half_writable(source: Path) -> dict[str, pd.DataFrame]:
    good = pd.DataFrame({"customer_id": ["a"], "ts": [pd.Timestamp("2024-01-01")], "amount": [1.0]})
    return {"transactions": good, "customers": _Exploding()}  # type: ignore[dict-item]


def test_run_import_writes_tables(tmp_path: Path) -> None:
    out = tmp_path / "data" / "hillstrom"
    counts = run_import("hillstrom", HILLSTROM, out)
    assert counts == {
        "transactions": 64_578,
        "customers": 64_000,
        "interactions": 9_394,
        "offers": 64_000,
        "offer_catalog": 2,
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in counts)
    assert _leftovers(out.parent, out) == []
    back = pd.read_parquet(out / "offers.parquet")
    assert len(back) == 64_000 and back["accepted"].dtype == bool
    assert pd.api.types.is_string_dtype(back["customer_id"]) and pd.api.types.is_datetime64_dtype(back["ts"])


def test_run_import_replaces_previous_dataset(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "surveys.csv").write_text("customer_id,ts,kind,score\n")  # a table telco does not have
    (out / "transactions.csv").write_text("customer_id,ts,amount\n")
    (out / "notes.txt").write_text("keep me")
    counts = run_import("telco", TELCO, out)
    assert counts == {"transactions": 228_001, "customers": 7_043}
    assert sorted(p.name for p in out.iterdir()) == ["customers.parquet", "notes.txt", "transactions.parquet"]
    assert _leftovers(tmp_path, out) == []


def test_run_import_failure_midway_leaves_out_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(importers.IMPORTERS, "half", _half_writable)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        run_import("half", tmp_path, out)
    assert not out.exists()
    assert _leftovers(tmp_path, out) == []


def test_run_import_failure_leaves_existing_out_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(importers.IMPORTERS, "half", _half_writable)
    out = tmp_path / "out"
    out.mkdir()
    (out / "transactions.parquet").write_bytes(b"old transactions")
    (out / "offers.parquet").write_bytes(b"old offers")
    with pytest.raises(OSError, match="disk full"):
        run_import("half", tmp_path, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        "transactions.parquet": b"old transactions",
        "offers.parquet": b"old offers",
    }
    assert _leftovers(tmp_path, out) == []


def test_run_import_importer_error_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(source: Path) -> dict[str, pd.DataFrame]:
        raise RuntimeError("bad input")

    monkeypatch.setitem(importers.IMPORTERS, "broken", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="bad input"):
        run_import("broken", tmp_path, out)
    assert list(tmp_path.iterdir()) == []


def test_run_import_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset") as err:
        run_import("nope", RETAIL, tmp_path / "out")
    for name in ("online-retail", "complete-journey", "hillstrom", "telco"):
        assert name in str(err.value)
    assert not (tmp_path / "out").exists()


def test_run_import_missing_source(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        run_import("telco", missing, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="telco_customer_churn.parquet"):
        run_import("telco", empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_importer_names() -> None:
    assert set(IMPORTERS) == {"online-retail", "complete-journey", "hillstrom", "telco", "cdnow"}
