"""Property: rows at or after the cut-off never change any feature computed at that cut-off."""

from datetime import datetime, timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.data import load_frames
from features.pipeline import build_features
from features.schema import EVENT_TYPES, INTERACTION_CHANNELS, TRANSACTION_CHANNELS

T = datetime(2024, 6, 1)
CUSTOMERS = ["a", "b", "c"]


def _offsets(after: bool):
    # Minutes relative to T: before T is [-400 days, -1 min], at/after T is [0, +400 days].
    lo, hi = (0, 400 * 1440) if after else (-400 * 1440, -1)
    return st.integers(lo, hi)


def _tx_rows(after: bool):
    return st.lists(
        st.tuples(
            st.sampled_from(CUSTOMERS),
            _offsets(after),
            st.floats(-50, 200, allow_nan=False).map(lambda x: round(x, 2)),
            st.sampled_from(["o1", "o2", "o3", "o4", None]),
            st.sampled_from([*TRANSACTION_CHANNELS, "fax"]),
        ),
        max_size=12,
    )


def _int_rows(after: bool):
    return st.lists(
        st.tuples(
            st.sampled_from(CUSTOMERS),
            _offsets(after),
            st.sampled_from(INTERACTION_CHANNELS),
            st.sampled_from(EVENT_TYPES),
        ),
        max_size=6,
    )


def _survey_rows(after: bool):
    return st.lists(
        st.tuples(st.sampled_from(CUSTOMERS), _offsets(after), st.sampled_from(["nps", "csat"]), st.integers(0, 5)),
        max_size=4,
    )


def _offer_rows(after: bool):
    return st.lists(
        st.tuples(st.sampled_from(CUSTOMERS), _offsets(after), st.sampled_from(["x", "none"]), st.booleans()),
        max_size=4,
    )


def _frames(tx, inter, surv, offers):
    def ts(rows, i=1):
        return [T + timedelta(minutes=r[i]) for r in rows]

    return {
        "transactions": pd.DataFrame(
            {
                "customer_id": [r[0] for r in tx],
                "ts": pd.to_datetime(ts(tx)),
                "amount": [r[2] for r in tx],
                "order_id": [r[3] for r in tx],
                "channel": [r[4] for r in tx],
            }
        ),
        "interactions": pd.DataFrame(
            {
                "customer_id": [r[0] for r in inter],
                "ts": pd.to_datetime(ts(inter)),
                "channel": [r[2] for r in inter],
                "event_type": [r[3] for r in inter],
            }
        ),
        "surveys": pd.DataFrame(
            {
                "customer_id": [r[0] for r in surv],
                "ts": pd.to_datetime(ts(surv)),
                "kind": [r[2] for r in surv],
                "score": [float(r[3]) for r in surv],
            }
        ),
        "offers": pd.DataFrame(
            {
                "customer_id": [r[0] for r in offers],
                "ts": pd.to_datetime(ts(offers)),
                "offer_id": [r[2] for r in offers],
                "accepted": [r[3] for r in offers],
                "revenue": [5.0 if r[3] else 0.0 for r in offers],
            }
        ),
        "customers": pd.DataFrame({"customer_id": CUSTOMERS, "signup_ts": pd.to_datetime(["2023-01-01"] * 3)}),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    past=st.tuples(_tx_rows(False), _int_rows(False), _survey_rows(False), _offer_rows(False)),
    future=st.tuples(_tx_rows(True), _int_rows(True), _survey_rows(True), _offer_rows(True)),
)
def test_rows_at_or_after_cutoff_change_nothing(past, future):
    base = _frames(*past)
    # Future rows include ones exactly at T (offset 0) and ones sharing order ids with past rows.
    combined = _frames(*(p + f for p, f in zip(past, future, strict=True)))
    before = build_features(load_frames(base), T)
    after = build_features(load_frames(combined), T)
    pd.testing.assert_frame_equal(before, after)


def test_a_row_before_the_cutoff_does_change_features():
    # Guards the property test against passing vacuously (e.g. if features ignored every row).
    tx = [("a", -10, 20.0, "o1", "web")]
    base = build_features(load_frames(_frames(tx, [], [], [])), T)
    more = build_features(load_frames(_frames([*tx, ("a", -1, 30.0, "o2", "web")], [], [], [])), T)
    assert base.loc[0, "monetary_total"] == 20.0 and more.loc[0, "monetary_total"] == 50.0
