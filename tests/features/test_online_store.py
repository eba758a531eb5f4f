"""The embedded online store: what is written is what a lookup returns, and a new generation is read at once."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pandas as pd

from features.online_store import SQLiteOnlineStore, write_store

AS_OF = datetime(2025, 1, 1)


def test_rows_come_back_as_written_missing_values_as_none_and_infinities_kept(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "recency_days": [3.5, float("nan"), 0.0],
            "orders": [1, 2, 3],
            "ratio": [0.25, float("inf"), -float("inf")],
            "segment": ["x", None, "z"],
        }
    )
    write_store(tmp_path, frame, AS_OF, "fs1")
    store = SQLiteOnlineStore(tmp_path)
    assert store.get("a") == {"recency_days": 3.5, "orders": 1, "ratio": 0.25, "segment": "x"}
    assert store.get("b") == {"recency_days": None, "orders": 2, "ratio": math.inf, "segment": None}
    assert store.get("zzz") is None
    assert store.get_many(["c", "zzz", "a"]) == {"c": store.get("c"), "a": store.get("a")}
    assert store.get("c")["ratio"] == -math.inf
    assert store.metadata() == {
        "as_of": AS_OF.isoformat(),
        "feature_set_version": "fs1",
        "columns": ["recency_days", "orders", "ratio", "segment"],
        "customers": 3,
    }


def test_a_new_generation_is_read_by_the_next_lookup(tmp_path: Path) -> None:
    write_store(tmp_path, pd.DataFrame({"customer_id": ["a"], "orders": [1]}), AS_OF, "fs1")
    store = SQLiteOnlineStore(tmp_path)
    assert store.get("a") == {"orders": 1}
    write_store(tmp_path, pd.DataFrame({"customer_id": ["a", "b"], "orders": [5, 6]}), AS_OF, "fs1")
    assert store.get("a") == {"orders": 5} and store.get("b") == {"orders": 6}
