"""Bad-data fuzz of the loaders: generated tables and headers end in a named error or a load, never a crash.

Whatever the columns are called and whatever the cells hold, ``load_data_dir`` either loads the tables or raises
an error naming the file; ``cxpredict features build`` either writes its output or exits non-zero with that
message, writing nothing.
"""

from __future__ import annotations

import csv
import datetime
import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cxpredict.cli import app
from features.data import DataValidationError, load_data_dir

REQUIRED = ("customer_id", "ts", "amount")
#: Header names: the real ones, near misses, and hostile ones (quotes, SQL, spaces, control characters, unicode).
names = st.one_of(
    st.sampled_from([*REQUIRED, "channel", "quantity", "signup_ts", "churn_ts", "Customer_ID", " ts", "amount "]),
    st.sampled_from(['seg" || (SELECT 1) || "x', "a;DROP TABLE t", "read_csv('/etc/passwd')", "", "é", "x\ty"]),
    st.text(min_size=0, max_size=12),
)
cells = st.one_of(
    st.sampled_from(["", "NaN", "inf", "-1", "0", "1e309", "2024-01-01", "2024-13-45", "2024-02-01T10:00:00+02:00"]),
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=10),
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    keep = draw(st.lists(st.sampled_from(REQUIRED), unique=True))
    header = draw(st.lists(names, max_size=5)) + keep
    header = draw(st.permutations(header))
    rows = draw(st.lists(st.lists(cells, min_size=len(header), max_size=len(header)), max_size=8))
    return header, rows


@st.composite
def nearly_valid(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """The required columns with plausible cells, an extra (possibly hostile) column, now and then a bad cell."""
    extra = draw(st.lists(names.filter(lambda n: n not in REQUIRED), max_size=1))
    header = [*REQUIRED, *extra]
    good = {
        "customer_id": st.sampled_from(["a", "b", "c", "42", "x y"]),
        "ts": st.datetimes(datetime.datetime(2023, 1, 1), datetime.datetime(2024, 2, 28)).map(lambda d: d.isoformat()),
        "amount": st.floats(-100, 1000).map(str),
    }
    rows = []
    for _ in range(draw(st.integers(1, 8))):
        row = [draw(good.get(column, cells)) for column in header]
        if draw(st.integers(0, 9)) == 0:
            row[draw(st.integers(0, len(row) - 1))] = draw(cells)
        rows.append(row)
    return header, rows


def write_table(directory: Path, name: str, header: list[str], rows: list[list[str]], parquet: bool) -> Path | None:
    directory.mkdir(parents=True, exist_ok=True)
    if parquet:
        path = directory / f"{name}.parquet"
        frame = pd.DataFrame(rows, columns=[f"c{i}" for i in range(len(header))], dtype="string")
        frame.columns = header  # duplicates and odd names as they are
        try:
            frame.to_parquet(path)
        except (ValueError, TypeError):  # pyarrow refuses duplicate names itself: no such file can exist
            return None
        return path
    path = directory / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def clean(text: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


FUZZ = settings(
    max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@FUZZ
@given(tx=tables() | nearly_valid(), customers=st.none() | tables(), parquet=st.booleans())
def test_loading_generated_tables_loads_or_names_the_file(
    tx: tuple[list[str], list[list[str]]], customers: tuple[list[str], list[list[str]]] | None, parquet: bool
) -> None:
    texts = [*tx[0], *(c for row in tx[1] for c in row)]
    if customers:
        texts += [*customers[0], *(c for row in customers[1] for c in row)]
    if not all(clean(t) for t in texts):
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        written = [write_table(data, "transactions", *tx, parquet)]
        if customers:
            written.append(write_table(data, "customers", *customers, parquet))
        if None in written:
            return
        try:
            con, _ = load_data_dir(data)
        except DataValidationError as exc:
            assert any(str(path) in str(exc) for path in written), str(exc)
            assert exc.problem
            event("named error")
            return
        event("loaded")
        con.close()


@settings(max_examples=20, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(tx=tables() | nearly_valid())
def test_features_build_on_generated_data_writes_all_or_nothing(tx: tuple[list[str], list[list[str]]]) -> None:
    if not all(clean(t) for t in [*tx[0], *(c for row in tx[1] for c in row)]):
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_table(root / "data", "transactions", *tx, parquet=False)
        out = root / "features.parquet"
        env = {"CXPREDICT_HOME": str(root / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
        args = ["features", "build", "--data", str(root / "data"), "--as-of", "2024-03-01", "--out", str(out)]
        result = CliRunner().invoke(app, args, env=env)
        if result.exit_code == 0:
            assert out.exists() and pd.read_parquet(out) is not None
            event("built")
            return
        event(f"refused (exit {result.exit_code})")
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert any(line.startswith("error: ") for line in result.output.splitlines()), result.output
        if "column" in result.output:  # a data error names the file it found it in
            assert str(path) in result.output, result.output
        assert not out.exists() and not list(root.glob("*.tmp*")), "a failed build left a file behind"
