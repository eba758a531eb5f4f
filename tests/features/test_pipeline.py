"""Known-value tests of the feature and label definitions on tiny hand-written tables."""

from datetime import datetime

import pandas as pd
import pytest

from features.data import load_frames
from features.definitions import feature_names, feature_query, feature_set_version, registry
from features.pipeline import build_features, build_labels, build_offer_outcomes, build_snapshots

T = datetime(2024, 4, 1)


def _tx(rows):
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "order_id", "channel", "category"]).assign(
        ts=lambda d: pd.to_datetime(d.ts, format="mixed")
    )


@pytest.fixture
def con():
    tx = _tx(
        [
            ("a", "2024-01-05", 10.0, "o1", "web", "x"),
            ("a", "2024-02-05", 20.0, "o2", "store", "y"),
            ("a", "2024-02-05", -5.0, "o3", "store", "y"),
            ("a", "2024-03-10", 30.0, "o4", "web", "x"),
            ("a", "2024-04-10", 100.0, "o7", "web", "x"),  # after T: must not count
            ("b", "2023-06-01 12:00", 50.0, "o5", "app", "z"),
            ("c", "2022-01-01", 70.0, "o6", "web", "z"),  # outside the 365-day lookback at T
        ]
    )
    interactions = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "ts": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-05-01", "2023-12-01"]),
            "channel": ["support", "email", "web", "web"],
            "event_type": ["ticket", "open", "session", "session"],
        }
    )
    surveys = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a"],
            "ts": pd.to_datetime(["2024-01-01", "2024-03-01", "2024-04-02"]),
            "kind": ["nps", "nps", "nps"],
            "score": [9.0, 3.0, 10.0],
        }
    )
    offers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "b", "a"],
            "ts": pd.to_datetime(["2024-02-01", "2024-02-01", "2024-04-05", "2024-04-03"]),
            "offer_id": ["discount", "none", "discount", "free_ship"],
            "accepted": [True, False, True, False],
            "revenue": [20.0, 0.0, 15.0, 0.0],
        }
    )
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "region": ["n", "s", "n"], "age": [30, 40, 50]})
    return load_frames(
        {
            "transactions": tx,
            "interactions": interactions,
            "surveys": surveys,
            "offers": offers,
            "customers": customers,
        }
    )


def test_known_values(con):
    f = build_features(con, T).set_index("customer_id")
    assert list(f.index) == ["a", "b"]  # c last bought more than a year before T
    a, b = f.loc["a"], f.loc["b"]
    assert a.recency_days == 22.0
    assert a.first_purchase_days == 87.0
    assert a.frequency_total == 3  # the return order is not a purchase
    assert a.monetary_total == 55.0
    assert a.monetary_prev_30d == 15.0  # Feb 5: 20 bought, 5 returned
    assert a.return_amount_365d == 5.0
    assert a.categories_365d == 2
    assert a.share_orders_web == pytest.approx(2 / 3)
    assert a.ipt_mean_days == pytest.approx(32.5)  # Jan 5 -> Feb 5 -> Mar 10
    assert a.ipt_last_days == 34
    assert a.support_contacts_90d == 1 and a.interactions_email_30d == 0 and a.interactions_email_90d == 1
    assert a.days_since_support_contact == 31.0
    assert a.nps_last == 3.0 and a.nps_avg == 6.0 and a.nps_count == 2  # the Apr 2 answer is after T
    assert a.offers_365d == 1 and a.offers_accepted_365d == 1 and a.offer_accept_rate == 1.0
    assert b.offers_365d == 0  # the control arm is not an offer
    assert b.recency_days == pytest.approx(304.5)
    assert b.interactions_web_90d == 0 and b.days_since_web == pytest.approx(122.0)
    assert a.attr_region == "n" and b.attr_age == 40
    assert pd.isna(b.ipt_mean_days)


def test_feature_columns_and_version(con):
    f = build_features(con, T)
    assert list(f.columns) == ["customer_id", *feature_names(), "attr_region", "attr_age"]
    v = feature_set_version()
    assert v.startswith("1.") and v == feature_set_version()
    assert len({x.name for x in registry()}) == len(registry())


def test_query_is_pure_text_of_cutoff():
    q1 = feature_query(T, 365, False, [])
    q2 = feature_query(T, 365, False, [])
    assert q1 == q2 and "now()" not in q1.lower() and "current_" not in q1.lower()
    assert feature_query(datetime(2024, 4, 2), 365, False, []) != q1


def test_labels(con):
    lab = build_labels(con, T, horizon_days=30, cltv_horizon_days=365).set_index("customer_id")
    assert lab.loc["a", "churned"] == 0 and lab.loc["a", "spend_h"] == 100.0 and lab.loc["a", "orders_h"] == 1
    assert lab.loc["b", "churned"] == 1 and lab.loc["b", "spend_h"] == 0.0
    assert not lab.loc["a", "cltv_observed"]  # data ends long before T + 365 days
    short = build_labels(con, T, horizon_days=5, cltv_horizon_days=5).set_index("customer_id")
    assert short.loc["a", "churned"] == 1  # the Apr 10 purchase is outside [T, T+5d)


def test_contract_churn_uses_churn_ts():
    tx = _tx([("a", "2024-01-05", 10.0, "o1", "web", "x"), ("b", "2024-01-05", 10.0, "o2", "web", "x")])
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "signup_ts": pd.to_datetime(["2023-01-01", "2023-01-01", "2023-01-01"]),
            "churn_ts": pd.to_datetime(["2024-04-15", None, "2024-03-01"]),
        }
    )
    con = load_frames({"transactions": tx, "customers": customers})
    lab = build_labels(con, T, 30, 365).set_index("customer_id")
    assert list(lab.index) == ["a", "b"]  # c cancelled before T: not in the population
    assert lab.loc["a", "churned"] == 1 and lab.loc["b", "churned"] == 0
    f = build_features(con, T).set_index("customer_id")
    assert f.loc["a", "tenure_days"] == f.loc["a", "signup_days"] == 456.0


def test_offer_outcomes_first_offer_in_window(con):
    out = build_offer_outcomes(con, T, window_days=30).set_index("customer_id")
    assert out.loc["a", "offer_id"] == "free_ship" and out.loc["a", "accepted"] == 0
    assert out.loc["b", "offer_id"] == "discount" and out.loc["b", "revenue"] == 15.0


def test_snapshots_stack(con):
    snaps = build_snapshots(con, [datetime(2024, 3, 1), T], 30, 365)
    assert sorted(snaps.snapshot.unique()) == [pd.Timestamp("2024-03-01"), pd.Timestamp(T)]
    assert {"churned", "spend_h", "recency_days"} <= set(snaps.columns)
    assert not snaps.duplicated(["snapshot", "customer_id"]).any()
