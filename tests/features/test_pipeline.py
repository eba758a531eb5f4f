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
            ("c", "2022-01-01", 70.0, "o6", "web", "z"),  # lapsed: last bought more than a year before T
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
    assert list(f.index) == ["a", "b", "c"]  # c lapsed more than a year before T: still a known customer
    a, b, c = f.loc["a"], f.loc["b"], f.loc["c"]
    assert c.recency_days == 821.0 and c.frequency_total == 1 and c.frequency_365d == 0 and c.monetary_total == 70.0
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
    # BG/NBD summary in days: a bought on 3 distinct days, Jan 5 to Mar 10, first purchase 87 days before T.
    assert a.bg_frequency == 2 and a.bg_recency_days == 65 and a.bg_age_days == 87.0
    assert b.bg_frequency == 0 and b.bg_recency_days == 0 and b.bg_age_days == 305.0  # counted from the day
    assert a.cancelled_before_asof == 0


def test_feature_columns_and_version(con):
    f = build_features(con, T)
    assert list(f.columns) == ["customer_id", *feature_names(), "attr_region", "attr_age"]
    v = feature_set_version()
    assert v.startswith("1.") and v == feature_set_version()
    assert len({x.name for x in registry()}) == len(registry())


def test_query_is_pure_text_of_cutoff():
    q1 = feature_query(T, [])
    q2 = feature_query(T, [])
    assert q1 == q2 and "now()" not in q1.lower() and "current_" not in q1.lower()
    assert feature_query(datetime(2024, 4, 2), []) != q1
    assert feature_query(T, [], response_window_days=7) != q1


def test_response_window_is_part_of_the_version():
    assert feature_set_version(7) != feature_set_version() == feature_set_version(14)


def test_labels(con):
    lab = build_labels(con, T, horizon_days=30, cltv_horizon_days=365).set_index("customer_id")
    assert list(lab.index) == ["a", "b", "c"]  # the lapsed customer is labelled (and trained on) too
    assert lab.loc["c", "churned"] == 1 and lab.loc["c", "spend_h"] == 0.0
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
    assert list(lab.index) == ["a", "b"]  # c cancelled before T: nothing to predict, not a training row
    assert lab.loc["a", "churned"] == 1 and lab.loc["b", "churned"] == 0
    f = build_features(con, T).set_index("customer_id")
    assert f.loc["a", "tenure_days"] == f.loc["a", "signup_days"] == 456.0
    # c is known (answered as already churned), the others are not cancelled.
    assert list(f.index) == ["a", "b", "c"]
    assert f.cancelled_before_asof.to_dict() == {"a": 0.0, "b": 0.0, "c": 1.0}


def test_known_customers_population():
    """CONTRACT §2: a transaction before T of any amount, or a customers row signed up before T (or undated)."""
    tx = _tx(
        [
            ("zero", "2024-01-05", 0.0, "o1", "web", "x"),  # only a zero-amount line
            ("ret", "2024-01-06", -4.0, "o2", "web", "x"),  # only a return
            ("later", "2024-05-01", 10.0, "o3", "web", "x"),  # first seen after T
        ]
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["signed", "undated", "future", "zero"],
            "signup_ts": pd.to_datetime(["2024-02-01", None, "2024-06-01", "2023-01-01"]),
        }
    )
    con = load_frames({"transactions": tx, "customers": customers})
    f = build_features(con, T).set_index("customer_id")
    assert list(f.index) == ["ret", "signed", "undated", "zero"]
    assert f.loc["zero", "frequency_total"] == 0 and f.loc["zero", "monetary_total"] == 0.0
    assert f.loc["ret", "monetary_total"] == -4.0
    assert pd.isna(f.loc["signed", "recency_days"]) and f.loc["signed", "signup_days"] == 60.0
    lab = build_labels(con, T, 90, 365).set_index("customer_id")
    # An undated customers row is answered, but trained on only from its first transaction: the file is a list as
    # of extraction, and at an earlier cut-off it names customers who had not joined yet.
    assert list(lab.index) == ["ret", "signed", "zero"] and lab.churned.tolist() == [1, 1, 1]


def test_no_customers_file_no_invented_rows():
    con = load_frames({"transactions": _tx([("a", "2024-01-05", 5.0, "o1", "web", "x")])})
    assert con.execute("SELECT count(*) FROM customers").fetchall()[0][0] == 0
    assert build_features(con, T).customer_id.tolist() == ["a"]


def test_offer_outcomes_first_offer_in_window(con):
    out = build_offer_outcomes(con, T, window_days=30).set_index("customer_id")
    assert out.loc["a", "offer_id"] == "free_ship" and out.loc["a", "accepted"] == 0
    assert out.loc["b", "offer_id"] == "discount" and out.loc["b", "revenue"] == 15.0


def test_snapshots_stack(con):
    snaps = build_snapshots(con, [datetime(2024, 3, 1), T], 30, 365)
    assert sorted(snaps.snapshot.unique()) == [pd.Timestamp("2024-03-01"), pd.Timestamp(T)]
    assert {"churned", "spend_h", "recency_days"} <= set(snaps.columns)
    assert not snaps.duplicated(["snapshot", "customer_id"]).any()
