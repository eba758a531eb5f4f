"""Column names are data: a hostile ``customers`` header never changes a query or reads a file (CONTRACT §1)."""

from datetime import datetime

import duckdb
import pandas as pd
import pytest

from features.data import load_data_dir, load_frames
from features.pipeline import build_features

T = datetime(2024, 4, 1)
HOSTILE = ['seg" || (SELECT 1) || "x', "x\" || (SELECT content FROM read_text('/etc/passwd')) || \"", "a'b"]


def _tables() -> dict[str, pd.DataFrame]:
    tx = pd.DataFrame(
        {"customer_id": ["a", "b"], "ts": pd.to_datetime(["2024-01-05", "2024-02-05"]), "amount": [10.0, 20.0]}
    )
    customers = pd.DataFrame({"customer_id": ["a", "b"], **{name: ["v1", "v2"] for name in HOSTILE}})
    return {"transactions": tx, "customers": customers}


def test_hostile_attribute_names_are_plain_columns():
    frame = build_features(load_frames(_tables()), T).set_index("customer_id")
    for name in HOSTILE:
        # The value is the column's own value: nothing was concatenated, selected or read from a file.
        assert list(frame[f"attr_{name}"]) == ["v1", "v2"]
    assert not any("root:" in str(v) for v in frame.to_numpy().ravel())


def test_hostile_names_from_csv(tmp_path):
    tables = _tables()
    tables["transactions"].to_csv(tmp_path / "transactions.csv", index=False)
    tables["customers"].to_csv(tmp_path / "customers.csv", index=False)
    con, _ = load_data_dir(tmp_path)
    frame = build_features(con, T)
    assert frame[[f"attr_{n}" for n in HOSTILE]].to_numpy().tolist() == [["v1"] * 3, ["v2"] * 3]


def test_no_file_access_after_loading():
    con = load_frames(_tables())
    with pytest.raises(duckdb.Error, match="disabled"):
        con.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
