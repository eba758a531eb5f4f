"""Validation of input files: clear errors that name file, column and rows, and nothing written on failure."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxpredict.cli import app
from features.data import DataValidationError, load_data_dir

GOOD = "customer_id,ts,amount\na,2024-01-01,10\nb,2024-01-02,5.5\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("text", "column", "needle"),
    [
        ("customer_id,ts\na,2024-01-01\n", "amount", "required column"),
        ("customer_id,ts,amount\na,2024-01-01,10\nb,not a date,5\nc,2024-13-45,1\n", "ts", "row 2: 'not a date'"),
        ("customer_id,ts,amount\na,2024-01-01,10\nb,2024-01-02,ten\n", "amount", "row 2: 'ten'"),
        ("customer_id,ts,amount\na,,10\n", "ts", "empty required value"),
    ],
)
def test_bad_transactions_name_file_column_and_rows(tmp_path, text, column, needle):
    _write(tmp_path, "transactions.csv", text)
    with pytest.raises(DataValidationError) as err:
        load_data_dir(tmp_path)
    msg = str(err.value)
    assert "transactions.csv" in msg and f"'{column}'" in msg and needle in msg
    assert err.value.column == column


def test_bad_optional_table_is_reported_too(tmp_path):
    _write(tmp_path, "transactions.csv", GOOD)
    _write(tmp_path, "surveys.csv", "customer_id,ts,kind,score\na,2024-01-01,nps,great\n")
    with pytest.raises(DataValidationError, match=r"surveys.csv, column 'score'"):
        load_data_dir(tmp_path)


def test_parquet_with_string_timestamps_and_zones(tmp_path):
    pd.DataFrame(
        {"customer_id": [1.0, 2.0], "ts": ["2024-01-01T10:00:00+02:00", "2024-01-01 08:00"], "amount": ["1", "2"]}
    ).to_parquet(tmp_path / "transactions.parquet")
    con, _ = load_data_dir(tmp_path)
    rows = con.execute("SELECT customer_id, ts FROM transactions ORDER BY customer_id").fetchall()
    assert [r[0] for r in rows] == ["1", "2"]  # float ids become clean strings
    assert rows[0][1] == rows[1][1] == pd.Timestamp("2024-01-01 08:00").to_pydatetime()


def test_oddities_are_counted_not_dropped_silently(tmp_path):
    _write(
        tmp_path,
        "transactions.csv",
        "customer_id,ts,amount\na,2024-01-01,10\na,2024-01-01,10\n,2024-01-01,3\na,2024-01-02,-4\nb,2024-01-03,0\n",
    )
    con, report = load_data_dir(tmp_path)
    odd = report.tables["transactions"].oddities
    assert odd == {"rows_without_customer": 1, "duplicates_dropped": 1, "returns": 1, "zero_amount": 1}
    assert report.tables["transactions"].rows_kept == 3
    assert len(report.data_hash) == 16


def test_missing_required_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="transactions"):
        load_data_dir(tmp_path)


def test_cli_bad_input_exits_nonzero_and_writes_nothing(tmp_path):
    data = _write(tmp_path, "transactions.csv", "customer_id,ts,amount\na,yesterday,10\n")
    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(app, ["features", "build", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 2
    assert "column 'ts'" in result.output and "row 1: 'yesterday'" in result.output
    assert not out.exists() and not list(tmp_path.glob(".features*"))


def test_cli_builds_features(tmp_path):
    data = _write(tmp_path, "transactions.csv", GOOD)
    out = tmp_path / "f.csv"
    result = CliRunner().invoke(
        app, ["features", "build", "--data", str(data), "--as-of", "2024-02-01", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.customer_id) == ["a", "b"] and frame.monetary_total.tolist() == [10.0, 5.5]


def test_cli_bad_as_of(tmp_path):
    data = _write(tmp_path, "transactions.csv", GOOD)
    result = CliRunner().invoke(
        app, ["features", "build", "--data", str(data), "--as-of", "soon", "--out", str(tmp_path / "f.csv")]
    )
    assert result.exit_code == 2 and "--as-of 'soon'" in result.output
