"""The synthetic generator: determinism, canonical schema, and the signal the models are meant to find.

Signal checks use plain pandas on the generated tables (never project feature code), pooled over several
cut-offs so that a few hundred customers give a stable answer.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.schema import (
    CONTROL_OFFER,
    EVENT_TYPES,
    INTERACTION_CHANNELS,
    SURVEY_KINDS,
    TABLES,
    TRANSACTION_CHANNELS,
)
from features.synthetic import OFFER_IDS, SyntheticConfig, generate, generate_with_truth, write_dataset

H = pd.Timedelta(days=90)
START, END = pd.Timestamp("2023-01-01"), pd.Timestamp("2025-01-01")
CUTOFFS = pd.date_range("2023-07-01", "2024-09-01", freq="MS")


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame]:
    return generate(SyntheticConfig(n_customers=300, seed=3))


@pytest.fixture(scope="module")
def data() -> dict[str, pd.DataFrame]:
    return generate(SyntheticConfig(n_customers=800, seed=11))


def snapshots(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (cut-off, customer with a purchase in the year before it): churn label and signals."""
    tx, inter, surveys = tables["transactions"], tables["interactions"], tables["surveys"]
    buys = tx[tx["amount"] > 0]
    support = inter[inter["event_type"].isin(["ticket", "complaint"])]
    nps = surveys[surveys["kind"] == "nps"].sort_values("ts")
    digital = inter[inter["event_type"].isin(["session", "open"])]
    rows = []
    for cut in CUTOFFS:
        active = buys.loc[(buys["ts"] < cut) & (buys["ts"] >= cut - pd.Timedelta(days=365)), "customer_id"]
        frame = pd.DataFrame(index=pd.Index(active.unique(), name="customer_id"))
        future = buys.loc[(buys["ts"] >= cut) & (buys["ts"] < cut + H), "customer_id"]
        frame["churn"] = ~frame.index.isin(future)
        recent = support.loc[(support["ts"] < cut) & (support["ts"] >= cut - H), "customer_id"]
        frame["support"] = frame.index.isin(recent)
        frame["nps"] = nps[nps["ts"] < cut].groupby("customer_id")["score"].last().reindex(frame.index)
        last_buy = buys.loc[buys["ts"] < cut].groupby("customer_id")["ts"].max().reindex(frame.index)
        frame["recency_days"] = (cut - last_buy).dt.days
        age = cut - digital.loc[digital["ts"] < cut, ["customer_id", "ts"]].set_index("customer_id")["ts"]
        frame["digital_30d"] = (age <= pd.Timedelta(days=30)).groupby(level=0).sum().reindex(frame.index)
        prior = (age > pd.Timedelta(days=30)) & (age <= pd.Timedelta(days=120))
        frame["digital_prior_30d"] = prior.groupby(level=0).sum().reindex(frame.index) / 3
        frame = frame.fillna({"digital_30d": 0, "digital_prior_30d": 0})
        rows.append(frame.reset_index().assign(cutoff=cut))
    return pd.concat(rows, ignore_index=True)


# --- determinism -----------------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames(small: dict[str, pd.DataFrame]) -> None:
    again = generate(SyntheticConfig(n_customers=300, seed=3))
    assert again.keys() == small.keys()
    for name, frame in small.items():
        pd.testing.assert_frame_equal(again[name], frame, check_exact=True)


def test_different_seed_gives_different_frames(small: dict[str, pd.DataFrame]) -> None:
    other = generate(SyntheticConfig(n_customers=300, seed=4))
    for name in ("transactions", "customers", "interactions", "surveys", "offers"):
        assert not other[name].equals(small[name]), name


def test_optional_tables_can_be_switched_off() -> None:
    tables = generate(SyntheticConfig(n_customers=50, with_offers=False, with_interactions=False, with_surveys=False))
    assert set(tables) == {"transactions", "customers"}
    with_all = generate(SyntheticConfig(n_customers=50))
    assert set(with_all) == set(TABLES)


def test_config_rejects_unknown_fields_and_bad_periods() -> None:
    with pytest.raises(ValueError):
        SyntheticConfig(n_customer=10)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        SyntheticConfig(start=datetime(2024, 1, 1), end=datetime(2023, 1, 1))


# --- schema ----------------------------------------------------------------------------------------------


def test_columns_and_dtypes_follow_the_schema(small: dict[str, pd.DataFrame]) -> None:
    for name, frame in small.items():
        spec = TABLES[name]
        assert set(spec.required_columns) <= set(frame.columns), name
        for column in spec.columns:
            if column.name not in frame.columns:
                continue
            series = frame[column.name]
            if column.kind == "timestamp":
                assert pd.api.types.is_datetime64_dtype(series), (name, column.name)
                assert getattr(series.dtype, "tz", None) is None
            elif column.kind == "number":
                assert pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            elif column.kind == "bool":
                assert pd.api.types.is_bool_dtype(series), (name, column.name)
            else:
                assert pd.api.types.is_string_dtype(series), (name, column.name)
                assert series.dropna().map(type).eq(str).all(), (name, column.name)
    assert small["transactions"]["amount"].dtype == np.float64


def test_customers_table(small: dict[str, pd.DataFrame]) -> None:
    customers = small["customers"]
    assert len(customers) == 300 and customers["customer_id"].is_unique
    assert customers["customer_id"].str.fullmatch(r"c\d{6}").all()
    assert customers["churn_ts"].isna().all()
    assert customers["signup_ts"].notna().all() and (customers["signup_ts"] < END).all()
    assert (customers["signup_ts"] < START).any() and (customers["signup_ts"] >= START).any()
    assert customers["region"].nunique() == 4
    assert set(customers["segment"]) == {"consumer", "smb"}
    assert pd.api.types.is_integer_dtype(customers["age"])


def test_vocabularies(small: dict[str, pd.DataFrame]) -> None:
    tx, inter, surveys, offers = (small[t] for t in ("transactions", "interactions", "surveys", "offers"))
    assert set(tx["channel"]) <= set(TRANSACTION_CHANNELS) and tx["channel"].nunique() >= 3
    assert set(inter["channel"]) <= set(INTERACTION_CHANNELS)
    assert set(inter["event_type"]) == set(EVENT_TYPES)
    assert set(surveys["kind"]) == set(SURVEY_KINDS)
    for kind, (low, high) in SURVEY_KINDS.items():
        scores = surveys.loc[surveys["kind"] == kind, "score"]
        assert scores.between(low, high).all() and (scores == scores.round()).all(), kind
    assert set(offers["offer_id"]) == set(OFFER_IDS) and CONTROL_OFFER in set(offers["offer_id"])
    assert (offers["propensity"] == 0.25).all() and (offers["channel"] == "email").all()
    assert tx["category"].nunique() == 8
    assert tx["quantity"].between(1, 5).all()
    assert tx.dropna(subset=["order_id"]).groupby("order_id")["product_id"].size().max() <= 10


def test_events_lie_in_the_period_and_belong_to_known_customers(small: dict[str, pd.DataFrame]) -> None:
    known = set(small["customers"]["customer_id"])
    for name in ("transactions", "interactions", "surveys", "offers"):
        frame = small[name]
        assert len(frame) > 0, name
        assert frame["ts"].between(START, END, inclusive="left").all(), name
        assert set(frame["customer_id"]) <= known, name
    signup = small["customers"].set_index("customer_id")["signup_ts"]
    tx = small["transactions"]
    assert (tx["ts"] >= tx["customer_id"].map(signup)).all()


def test_offers_and_transactions_agree(small: dict[str, pd.DataFrame]) -> None:
    offers, tx, catalog = small["offers"], small["transactions"], small["offer_catalog"]
    assert (offers.loc[~offers["accepted"], "revenue"] == 0).all()
    assert (offers.loc[offers["accepted"], "revenue"] > 0).all()
    # Each accepted offer's revenue is one order by that customer within 14 days.
    orders = tx[tx["amount"] > 0].groupby("order_id").agg(c=("customer_id", "first"), ts=("ts", "first"))
    orders["v"] = tx[tx["amount"] > 0].groupby("order_id")["amount"].sum().round(2)
    for row in offers[offers["accepted"]].head(50).itertuples():
        hit = orders[(orders["c"] == row.customer_id) & (orders["ts"] >= row.ts)]
        hit = hit[hit["ts"] < row.ts + pd.Timedelta(days=14)]
        assert np.isclose(hit["v"], row.revenue).any()
        # Its outcome became known when that order was placed (whole seconds, like every timestamp).
        assert (hit.loc[np.isclose(hit["v"], row.revenue), "ts"].dt.floor("s") == row.responded_ts).any()
    # An offer not taken is known to be so when its 14-day window closes.
    missed = offers[~offers["accepted"]]
    assert (missed["responded_ts"] == missed["ts"] + pd.Timedelta(days=14)).all()
    assert (offers["responded_ts"] >= offers["ts"]).all()
    assert list(catalog["offer_id"]) == ["discount_10", "free_shipping", "loyalty_points"]
    assert catalog["cost"].tolist() == [5.0, 3.0, 1.5]
    assert catalog["value"].between(20, 120).all()
    assert catalog.set_index("offer_id").loc["loyalty_points", "eligible_if"] == "tenure_days >= 180"
    assert catalog.set_index("offer_id").loc[["discount_10", "free_shipping"], "eligible_if"].isna().all()


def test_write_dataset_round_trips(small: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    out = tmp_path / "nested" / "data"
    write_dataset(small, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.parquet" for name in small)
    for name, frame in small.items():
        back = pd.read_parquet(out / f"{name}.parquet")
        pd.testing.assert_frame_equal(back, frame, check_dtype=False)


# --- signal ----------------------------------------------------------------------------------------------


def test_support_contacts_precede_churn(data: dict[str, pd.DataFrame]) -> None:
    snaps = snapshots(data)
    with_support = snaps.loc[snaps["support"], "churn"].mean()
    without = snaps.loc[~snaps["support"], "churn"].mean()
    assert snaps["support"].sum() > 200
    assert with_support > without + 0.05, (with_support, without)


def test_detractors_churn_more_than_promoters(data: dict[str, pd.DataFrame]) -> None:
    snaps = snapshots(data)
    detractors = snaps.loc[snaps["nps"] <= 6, "churn"]
    promoters = snaps.loc[snaps["nps"] >= 9, "churn"]
    assert len(detractors) > 100 and len(promoters) > 100
    assert detractors.mean() > promoters.mean() + 0.1, (detractors.mean(), promoters.mean())


def test_engagement_decay_flags_churn_that_recency_misses(data: dict[str, pd.DataFrame]) -> None:
    # Among recent buyers (RFM says "fine"), a collapse in sessions and opens still signals churn.
    snaps = snapshots(data)
    recent = snaps[snaps["recency_days"] <= 45]
    decayed = (recent["digital_30d"] < 0.4 * recent["digital_prior_30d"]) & (recent["digital_prior_30d"] >= 1)
    assert decayed.sum() > 50
    churn_decayed, churn_steady = recent.loc[decayed, "churn"].mean(), recent.loc[~decayed, "churn"].mean()
    assert churn_decayed > churn_steady + 0.06, (churn_decayed, churn_steady)


def test_offer_effects_are_heterogeneous(data: dict[str, pd.DataFrame]) -> None:
    tx, offers = data["transactions"], data["offers"]
    buys = tx[tx["amount"] > 0]
    orders = buys.groupby("order_id").agg(customer_id=("customer_id", "first"), value=("amount", "sum"))
    aov = orders.groupby("customer_id")["value"].mean()
    web_share = buys.assign(web=buys["channel"] == "web").groupby("customer_id")["web"].mean()
    o = offers.assign(aov=offers["customer_id"].map(aov), web=offers["customer_id"].map(web_share))
    low_spend = o["aov"] < o["aov"].median()
    groups = {"low_spend": low_spend, "web_heavy_high_spend": ~low_spend & (o["web"] >= 0.5)}
    best = {}
    for name, mask in groups.items():
        rates = o[mask].groupby("offer_id")["accepted"].mean()
        uplift = rates.drop(CONTROL_OFFER) - rates[CONTROL_OFFER]
        assert (uplift > 0).any(), (name, rates)
        best[name] = uplift.idxmax()
    assert len(set(best.values())) == 2, best


def test_truth_is_the_acceptance_probability_of_every_arm() -> None:
    """One truth row per offer; the drawn arm's probability is what the draws show, the others counterfactual."""
    config = SyntheticConfig(n_customers=800, seed=11)
    tables, truth = generate_with_truth(config)
    offers = tables["offers"]
    assert all(a.equals(b) for a, b in zip(tables.values(), generate(config).values(), strict=True))
    assert list(truth.columns) == [
        "customer_id",
        "offer_ts",
        *(f"p_{o}" for o in OFFER_IDS),
        *(f"s_{o}" for o in OFFER_IDS),
    ]
    joined = offers.merge(truth, left_on=["customer_id", "ts"], right_on=["customer_id", "offer_ts"], how="left")
    assert len(truth) == len(offers) == len(joined) and joined["p_none"].notna().all()
    probs = truth.filter(like="p_").to_numpy()
    assert ((probs > 0) & (probs < 1)).all()
    drawn = joined.apply(lambda r: r[f"p_{r['offer_id']}"], axis=1)
    # Per arm, the drawn acceptances match the truth's mean probability (binomial 4-sigma band).
    for arm, group in joined.groupby("offer_id"):
        p = drawn[group.index]
        assert abs(group["accepted"].mean() - p.mean()) < 4 * np.sqrt((p * (1 - p)).sum()) / len(p), arm
    # The truth in spend is the expected revenue: per arm, the logged revenue's mean matches it (4-sigma band).
    expected = joined.apply(lambda r: r[f"s_{r['offer_id']}"], axis=1)
    for arm, group in joined.groupby("offer_id"):
        spread = group["revenue"].std() / np.sqrt(len(group))
        assert abs(group["revenue"].mean() - expected[group.index].mean()) < 4 * spread, arm
    # Per customer, the order an offer brings is the same size under every arm but the discount's, 10% smaller.
    order = truth.filter(like="s_").to_numpy() / truth.filter(like="p_").to_numpy()
    assert np.allclose(order[:, 1], 0.9 * order[:, 0]) and np.allclose(order[:, 2:], order[:, [0]])
    # Effects differ by customer (the point of the generator): some gain from loyalty points, some lose.
    gain = truth["p_loyalty_points"] - truth["p_none"]
    assert (gain > 0.05).any() and (gain < 0).any()
    _, none = generate_with_truth(SyntheticConfig(n_customers=50, seed=1, with_offers=False))
    assert none.empty and "p_none" in none.columns


def test_returns_zero_prices_and_december_peak(data: dict[str, pd.DataFrame]) -> None:
    tx = data["transactions"]
    returns = tx[tx["amount"] < 0]
    assert 0.01 < len(returns) / len(tx) < 0.06
    assert (tx["amount"] == 0).any()
    # A return refers to an earlier sale of the same product in the same order.
    sales = tx[tx["amount"] > 0].groupby(["order_id", "product_id"])["ts"].min()
    sold_at = pd.Series(list(zip(returns["order_id"], returns["product_id"], strict=True))).map(sales)
    assert sold_at.notna().all() and (sold_at.to_numpy() < returns["ts"].to_numpy()).all()
    monthly = tx.groupby(tx["ts"].dt.to_period("M"))["amount"].sum()
    december = monthly[monthly.index.month == 12]
    assert (december > monthly.mean()).all() and (december > 1.3 * monthly.mean()).any()
