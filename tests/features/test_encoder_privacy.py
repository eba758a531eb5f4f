"""The encoder stores only common categories, and refuses identifier-like text attributes as features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from features.scoring import MAX_CATEGORIES, Encoder


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ids = [f"c{i}" for i in range(n)]
    return pd.DataFrame(
        {
            "customer_id": ids,
            "attr_email": [f"{c}@x.example" for c in ids],
            "attr_region": rng.choice(["north", "south"], n),
            # 60 common values (5 customers each would be too few; 6+ each here) plus one value of 2 customers.
            "attr_city": [f"city{i % 60}" for i in range(n - 2)] + ["hamlet", "hamlet"],
            "attr_age": rng.integers(18, 90, n).astype(float),
        }
    )


def test_identifier_like_text_is_refused_and_said_why() -> None:
    enc = Encoder.fit(_frame())
    assert "attr_email" not in enc.columns and "attr_email" not in enc.categories
    assert "100%" in enc.dropped["attr_email"] and "@" not in enc.dropped["attr_email"]
    assert {"attr_region", "attr_age"} <= set(enc.columns)
    assert "shared by 10 or more" in enc.dropped["attr_city"]  # 6-7 customers per city: none is kept by default
    assert json.loads(json.dumps(enc.to_json())) == enc.to_json()
    assert Encoder.from_json(enc.to_json()).dropped == enc.dropped


def test_vocabulary_is_capped_and_rare_values_are_not_stored() -> None:
    enc = Encoder.fit(_frame(), min_customers=5)
    cities = enc.categories["attr_city"]
    assert len(cities) == MAX_CATEGORIES and "hamlet" not in cities
    # A stored category still encodes; a rare one reads as unknown (NaN), like a value never seen.
    x = enc.encode_rows([{"attr_city": cities[0]}, {"attr_city": "hamlet"}])
    at = enc.columns.index("attr_city")
    assert x[0, at] == 0.0 and np.isnan(x[1, at])


def test_customers_are_counted_once_across_snapshots() -> None:
    # Two customers seen in 20 snapshots each: 40 rows, but only 2 customers share "gold".
    frame = pd.DataFrame({"customer_id": ["a", "b"] * 20, "attr_tier": ["gold"] * 40})
    enc = Encoder.fit(frame, min_customers=3)
    assert "attr_tier" not in enc.columns and "shared by 3" in enc.dropped["attr_tier"]
    assert Encoder.fit(frame.drop(columns="customer_id"), min_customers=3).categories == {"attr_tier": ["gold"]}
