"""``outcomes sync``: outcomes from the data within the horizon after each decision, recorded once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.settings import Settings
from serving.decision_log import SQLiteDecisionLog, new_decision_id
from serving.outcomes import sync
from tests.serving.logged import record


def _decision(cid: str, as_of: str | None, ts: float = 1.7e9) -> dict:
    return {
        "decision_id": new_decision_id(),
        "customer_id": cid,
        "ts": ts,
        "as_of": as_of,
        "model_versions": {},
        "context": {},
        "offer_id": "d10",
    }


def _write(data: Path, tx: list[tuple[str, str, float]], customers: pd.DataFrame | None = None) -> None:
    data.mkdir(exist_ok=True)
    pd.DataFrame(tx, columns=["customer_id", "ts", "amount"]).to_csv(data / "transactions.csv", index=False)
    if customers is not None:
        customers.to_csv(data / "customers.csv", index=False)


def test_sync_records_each_outcome_once(tmp_path: Path) -> None:
    settings = Settings(tracking_uri="sqlite:///unused.db", home=tmp_path / "home")
    data = tmp_path / "data"
    _write(
        data,
        [
            ("a", "2024-01-05", 10.0),  # before the window: not counted
            ("a", "2024-02-10", 30.0),
            ("a", "2024-02-20", -5.0),  # a return inside the window
            ("b", "2024-01-10", 50.0),  # b buys nothing in the window
            ("c", "2024-03-15", 20.0),
            ("z", "2024-05-20", 1.0),  # the data ends here
        ],
    )
    log = SQLiteDecisionLog(settings.home / "decisions.sqlite")
    da, db = _decision("a", "2024-02-01T00:00:00"), _decision("b", "2024-02-01T00:00:00")
    late = _decision("c", "2024-05-01T00:00:00")  # its 30-day window is not over in the data
    record(log, da, db, late)
    log.close()

    first = sync(data, settings, horizon_days=30)
    assert (first.decisions, first.complete, first.pending, first.inserted, first.duplicates) == (3, 2, 1, 6, 0)
    second = sync(data, settings, horizon_days=30)
    assert (second.inserted, second.duplicates) == (0, 6)

    log = SQLiteDecisionLog(settings.home / "decisions.sqlite")
    got = {r["customer_id"]: r["feedback"] for r in log.decisions_since()}
    log.close()
    assert got["a"] == {"purchased": 1.0, "spend": 25.0, "retained": 1.0}
    assert got["b"] == {"purchased": 0.0, "spend": 0.0, "retained": 0.0}
    assert got["c"] == {}


def test_contract_data_counts_cancellations(tmp_path: Path) -> None:
    settings = Settings(tracking_uri="sqlite:///unused.db", home=tmp_path / "home")
    data = tmp_path / "data"
    customers = pd.DataFrame(
        {"customer_id": ["a", "b"], "signup_ts": ["2023-01-01", "2023-01-01"], "churn_ts": ["2024-02-15", None]}
    )
    _write(data, [("a", "2024-02-10", 30.0), ("b", "2024-01-10", 5.0), ("z", "2024-06-01", 1.0)], customers)
    log = SQLiteDecisionLog(settings.home / "decisions.sqlite")
    record(log, _decision("a", "2024-02-01"), _decision("b", "2024-02-01"))
    log.close()
    assert sync(data, settings, horizon_days=30).inserted == 6
    log = SQLiteDecisionLog(settings.home / "decisions.sqlite")
    got = {r["customer_id"]: r["feedback"] for r in log.decisions_since()}
    log.close()
    # a bought but cancelled inside the window: not retained; b bought nothing but did not cancel: retained.
    assert got["a"]["retained"] == 0.0 and got["a"]["purchased"] == 1.0
    assert got["b"]["retained"] == 1.0 and got["b"]["purchased"] == 0.0


def test_bad_horizon_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--horizon-days"):
        sync(tmp_path, Settings(tracking_uri="sqlite:///x.db", home=tmp_path), horizon_days=0)
