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


def _one_offer(offset_min: int, accepted: bool, responded_min: int | None):
    frames = _frames([("a", -100 * 1440, 20.0, "o1", "web")], [], [], [("a", offset_min, "x", accepted)])
    frames["offers"]["responded_ts"] = pd.to_datetime(
        [None if responded_min is None else T + timedelta(minutes=responded_min)]
    )
    return build_features(load_frames(frames), T).set_index("customer_id").loc["a"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shown=st.integers(-400 * 1440, -1), known=st.integers(0, 400 * 1440), use_col=st.booleans())
def test_an_outcome_known_at_or_after_cutoff_changes_nothing(shown, known, use_col):
    # Without responded_ts the outcome is known 14 days after the offer was shown.
    if not use_col:
        shown = max(shown, -14 * 1440)
    responded = max(known, shown) if use_col else None
    taken, refused = _one_offer(shown, True, responded), _one_offer(shown, False, responded)
    pd.testing.assert_series_equal(taken, refused)
    # Shown within the 365-day window before T: counted as shown, not as accepted (older offers fall outside it).
    assert taken.offers_365d == (1 if shown > -365 * 1440 else 0)


def test_an_outcome_known_before_cutoff_does_change_features():
    taken, refused = _one_offer(-3 * 1440, True, -1440), _one_offer(-3 * 1440, False, -1440)
    assert taken.offers_accepted_365d == 1 and refused.offers_accepted_365d == 0
    old_taken = _one_offer(-20 * 1440, True, None)  # no responded_ts: known 14 days after it was shown
    assert old_taken.offers_accepted_365d == 1 and old_taken.offer_revenue_365d == 5.0
