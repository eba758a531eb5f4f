"""Data checks of the audit: float ids in CSV, unusable survey answers, two files for one table, empty populations."""

import logging
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from features.data import DataValidationError, load_data_dir
from features.materialize import materialize
from features.online_store import SQLiteOnlineStore
from features.pipeline import EmptyPopulationError
from features.settings import Settings

TX = "customer_id,ts,amount\n815.0,2024-01-01,10\n-3.00,2024-01-02,5\n,2024-01-03,1\n"


def _settings(tmp_path: Path) -> Settings:
    return Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", home=tmp_path / "home")


def test_csv_ids_written_as_floats_lose_the_fraction(tmp_path):
    (tmp_path / "transactions.csv").write_text(TX)
    (tmp_path / "customers.csv").write_text("customer_id,region\n815.0,north\n")
    con, _ = load_data_dir(tmp_path)
    assert sorted(r[0] for r in con.execute("SELECT customer_id FROM transactions").fetchall()) == ["-3", "815"]
    assert con.execute("SELECT customer_id FROM customers").fetchall() == [("815",)]


def test_csv_ids_are_left_alone_unless_all_look_like_floats(tmp_path):
    (tmp_path / "transactions.csv").write_text("customer_id,ts,amount\n815.0,2024-01-01,10\nA7,2024-01-02,5\n")
    con, _ = load_data_dir(tmp_path)
    assert sorted(r[0] for r in con.execute("SELECT customer_id FROM transactions").fetchall()) == ["815.0", "A7"]


def test_unusable_survey_answers_are_dropped_and_counted(tmp_path):
    (tmp_path / "transactions.csv").write_text("customer_id,ts,amount\na,2024-01-01,10\n")
    (tmp_path / "surveys.csv").write_text(
        "customer_id,ts,kind,score\n"
        "a,2024-01-01,nps,42\n"  # off the 0-10 scale
        "a,2024-01-02,csat,0\n"  # off the 1-5 scale
        "a,2024-01-03,ces,7\n"
        "a,2024-01-04,NPS,10\n"  # the kind's case does not matter
        "a,2024-01-05,stars,3\n"  # unknown kind
        "a,2024-01-06,,3\n"  # no kind
        "a,2024-01-07,csat,5\n"
    )
    con, report = load_data_dir(tmp_path)
    kept = con.execute("SELECT kind, score FROM surveys ORDER BY ts").fetchall()
    assert kept == [("ces", 7.0), ("nps", 10.0), ("csat", 5.0)]
    rep = report.tables["surveys"]
    assert rep.oddities["unknown_kind_dropped"] == 2 and rep.oddities["score_out_of_range_dropped"] == 2
    assert rep.rows_read == 7 and rep.rows_kept == 3


def test_two_files_for_one_table_is_an_error_naming_both(tmp_path):
    (tmp_path / "transactions.csv").write_text("customer_id,ts,amount\na,2024-01-01,10\n")
    pd.DataFrame({"customer_id": ["b"], "ts": [pd.Timestamp("2024-01-01")], "amount": [1.0]}).to_parquet(
        tmp_path / "transactions.parquet"
    )
    with pytest.raises(DataValidationError, match=r"transactions\.parquet and transactions\.csv both hold"):
        load_data_dir(tmp_path)


def test_materialize_refuses_an_empty_population_and_keeps_the_store(tmp_path):
    (tmp_path / "transactions.csv").write_text("customer_id,ts,amount\na,2024-01-01,10\nb,2024-02-01,5\n")
    settings = _settings(tmp_path)
    n, _ = materialize(tmp_path, None, settings)
    assert n == 2
    with pytest.raises(EmptyPopulationError, match=r"no customer is known at 1990-01-01.*2024-01-01 to 2024-02-01"):
        materialize(tmp_path, datetime(1990, 1, 1), settings)
    assert SQLiteOnlineStore(settings.online_store_dir).metadata()["customers"] == 2


def test_materialize_warns_when_the_store_shrinks_by_half(tmp_path, caplog):
    rows = "".join(f"c{i},2024-01-{i + 1:02d},10\n" for i in range(10))
    (tmp_path / "transactions.csv").write_text("customer_id,ts,amount\n" + rows)
    settings = _settings(tmp_path)
    materialize(tmp_path, None, settings)
    with caplog.at_level(logging.WARNING, logger="features.materialize"):
        n, _ = materialize(tmp_path, datetime(2024, 1, 4), settings)
    assert n == 3
    assert "fewer than half of the 10" in caplog.text
