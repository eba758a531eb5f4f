"""The CDNOW importer, on small files in both published layouts (it needs no shared data set)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxpredict.cli import app
from features.data import load_data_dir
from features.importers import run_import
from features.importers.cdnow import load

#: Hardie's layout: no header, zero-padded ids, two purchases by 00002 on one day, a zero-value purchase.
HARDIE = """00001 19970101  1  11.77
00002 19970112  1  12.00
00002 19970112  5  77.00
00003 19970102  2  20.76
00003 19970330  2  20.76
00004 19970101  1   0.00
"""


def _folder(tmp_path: Path, text: str, name: str = "cdnow") -> Path:
    src = tmp_path / name
    src.mkdir()
    (src / "CDNOW_master.txt").write_text(text)
    return src


def test_every_purchase_becomes_a_transaction(tmp_path: Path) -> None:
    tx = load(_folder(tmp_path, HARDIE))["transactions"]
    assert tx.customer_id.tolist() == ["00001", "00002", "00002", "00003", "00003", "00004"]
    assert (
        tx.ts.tolist()
        == pd.to_datetime(["1997-01-01", "1997-01-12", "1997-01-12", "1997-01-02", "1997-03-30", "1997-01-01"]).tolist()
    )
    assert tx.amount.tolist() == [11.77, 12.0, 77.0, 20.76, 20.76, 0.0]
    assert tx.quantity.tolist() == [1, 1, 5, 2, 2, 1]
    # Two purchases on one day are two orders.
    assert tx.order_id.is_unique and tx.order_id.iloc[1:3].tolist() == ["00002-19970112-1", "00002-19970112-2"]


def test_the_lifetimes_copy_with_a_header_reads_the_same(tmp_path: Path) -> None:
    header = " customer_id  date number_of_cds  dollar_value\n"
    with_header = load(_folder(tmp_path, header + HARDIE))["transactions"]
    plain = load(_folder(tmp_path, HARDIE, "plain"))["transactions"]
    pd.testing.assert_frame_equal(with_header, plain)


def test_run_import_writes_a_data_dir_the_loader_reads(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert run_import("cdnow", _folder(tmp_path, HARDIE), out) == {"transactions": 6}
    con, _ = load_data_dir(out)
    assert con.execute("SELECT count(DISTINCT customer_id), sum(amount) FROM transactions").fetchone() == (
        4,
        pytest.approx(142.29),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("00001 19970101 1\n", "line 1: expected 4 fields"),
        ("00001 19970101 1 11.77\n00002 1997-01-12 1 12.00\n", "line 2: date '1997-01-12' does not parse"),
        ("00001 19970101 1 eleven\n", "line 1: amount 'eleven' does not parse"),
        ("00001 19970101 1 11.77\n00002 19970112 1 12.00 9\n", "CDNOW_master.txt: Expected 4 fields in line 2, saw 5"),
        ("", "holds no purchases"),
        (" customer_id date number_of_cds dollar_value\n", "holds no purchases"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        load(_folder(tmp_path, text))


def test_cli_names_the_missing_file_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "data"
    res = CliRunner().invoke(app, ["import", "cdnow", str(tmp_path / "empty"), "--out", str(out)])
    assert res.exit_code != 0 and "CDNOW_master.txt" in res.output and "Traceback" not in res.output
    assert not out.exists()
