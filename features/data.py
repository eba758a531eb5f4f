"""Reading a data directory into DuckDB: validation, cleaning and counting of odd rows.

A data directory holds one file per canonical table (``transactions.parquet`` or ``transactions.csv``). Each file
is read by DuckDB (never fully into pandas), checked against :mod:`features.schema`, and loaded into an in-memory
table of the same name with canonical types. Missing optional tables are created empty so that every feature
definition runs unchanged on any data directory.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from features.schema import SURVEY_KINDS, TABLES, TableSpec

log = logging.getLogger(__name__)

_SQL_TYPES = {"string": "VARCHAR", "timestamp": "TIMESTAMP", "number": "DOUBLE", "bool": "BOOLEAN"}
_EXAMPLE_ROWS = 5


class DataValidationError(ValueError):
    """Input data breaks the contract: names the file, the column and example rows."""

    def __init__(self, file: Path, column: str | None, problem: str, examples: list[str] | None = None):
        self.file = file
        self.column = column
        self.problem = problem
        self.examples = examples or []
        where = f"{file}" + (f", column '{column}'" if column else "")
        text = f"{where}: {problem}"
        if self.examples:
            text += "\n  examples (row number: value):\n    " + "\n    ".join(self.examples)
        super().__init__(text)


@dataclass
class TableReport:
    """What loading one table found: rows read, kept, and counts of legal oddities."""

    file: str | None
    rows_read: int = 0
    rows_kept: int = 0
    oddities: dict[str, int] = field(default_factory=dict)


@dataclass
class LoadReport:
    """Per-table reports plus the content hash of every input file (logged to MLflow as the data version)."""

    data_dir: str
    tables: dict[str, TableReport] = field(default_factory=dict)
    file_hashes: dict[str, str] = field(default_factory=dict)

    @property
    def data_hash(self) -> str:
        """One hash over all input files, stable for identical inputs."""
        h = hashlib.sha256()
        for name in sorted(self.file_hashes):
            h.update(f"{name}={self.file_hashes[name]};".encode())
        return h.hexdigest()[:16]

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the run log."""
        lines = []
        for name, rep in self.tables.items():
            if rep.file is None:
                continue
            odd = ", ".join(f"{k}={v}" for k, v in rep.oddities.items() if v) or "none"
            lines.append(f"{name}: read {rep.rows_read}, kept {rep.rows_kept}; oddities: {odd}")
        return lines


def find_table_file(data_dir: Path, table: str) -> Path | None:
    """The file holding ``table`` in ``data_dir``, or None.

    Raises:
        DataValidationError: both ``<table>.parquet`` and ``<table>.csv`` exist (which one is meant is unknown).
    """
    found = [p for p in (data_dir / f"{table}.parquet", data_dir / f"{table}.csv") if p.exists()]
    if len(found) > 1:
        raise DataValidationError(
            found[0], None, f"{found[0].name} and {found[1].name} both hold table '{table}'; keep only one of them"
        )
    return found[0] if found else None


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reader(path: Path) -> str:
    p = str(path).replace("'", "''")
    if path.suffix == ".csv":
        # All text, so that a bad value is reported by our check rather than by DuckDB's sniffer.
        return f"read_csv('{p}', all_varchar = true, header = true)"
    return f"read_parquet('{p}')"


def _cast_expr(col: str, kind: str, source_type: str) -> str:
    q = _quote(col)
    if kind == "timestamp":
        if source_type.startswith("TIMESTAMP WITH TIME ZONE"):
            return f"timezone('UTC', {q})"
        if source_type.startswith("TIMESTAMP") or source_type == "DATE":
            return f"CAST({q} AS TIMESTAMP)"
        # Strings may carry a zone ("...+02:00"); naive strings are read as UTC (session TimeZone is UTC).
        return f"timezone('UTC', TRY_CAST({q} AS TIMESTAMPTZ))"
    if kind == "bool":
        if source_type == "BOOLEAN":
            return q
        return (
            f"CASE WHEN lower(trim(CAST({q} AS VARCHAR))) IN ('true','t','yes','y','1','1.0') THEN TRUE "
            f"WHEN lower(trim(CAST({q} AS VARCHAR))) IN ('false','f','no','n','0','0.0') THEN FALSE END"
        )
    if kind == "number":
        return f"TRY_CAST({q} AS DOUBLE)"
    if source_type in ("DOUBLE", "FLOAT") and col == "customer_id":
        # Ids stored as floats (12346.0) must become "12346", not "12346.0".
        return f"CAST(CAST({q} AS BIGINT) AS VARCHAR)"
    return f"NULLIF(trim(CAST({q} AS VARCHAR)), '')"


def _ids_written_as_floats(con: duckdb.DuckDBPyConnection, src: str, col: str) -> bool:
    """Whether every non-empty value of a text id column is an integer written as a float ("815.0")."""
    text = f"NULLIF(trim(CAST({_quote(col)} AS VARCHAR)), '')"
    n_values, n_floats = con.execute(
        f"SELECT count({text}), count({text}) FILTER (WHERE regexp_full_match({text}, '-?[0-9]+\\.0+')) FROM {src}"
    ).fetchall()[0]
    return n_values > 0 and n_values == n_floats


def _examples(con: duckdb.DuckDBPyConnection, src: str, col: str, bad_pred: str) -> list[str]:
    rows = con.execute(
        f"SELECT rn, CAST({_quote(col)} AS VARCHAR) FROM "
        f"(SELECT *, row_number() OVER () AS rn FROM {src}) WHERE {bad_pred} ORDER BY rn LIMIT {_EXAMPLE_ROWS}"
    ).fetchall()
    # Row numbers are 1-based data rows (the CSV header is not counted).
    return [f"row {rn}: {val!r}" for rn, val in rows]


def _load_table(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, path: Path, relation: str | None = None
) -> TableReport:
    src = f"raw_{spec.name}"
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {src} AS SELECT * FROM {relation or _reader(path)}")
        described = con.execute(f"DESCRIBE {src}").fetchall()
    except duckdb.Error as exc:
        raise DataValidationError(path, None, f"cannot be read: {exc}") from exc
    types = {row[0]: str(row[1]) for row in described}
    missing = [c for c in spec.required_columns if c not in types]
    if missing:
        raise DataValidationError(path, missing[0], f"required column(s) {missing} missing; found {sorted(types)}")

    selects: list[str] = []
    for col in spec.columns:
        if col.name not in types:
            selects.append(f"CAST(NULL AS {_SQL_TYPES[col.kind]}) AS {_quote(col.name)}")
            continue
        expr = _cast_expr(col.name, col.kind, types[col.name])
        if col.name == "customer_id" and types[col.name] == "VARCHAR" and _ids_written_as_floats(con, src, col.name):
            # A CSV exported from a float column: "12346.0" must become "12346", as for a Parquet DOUBLE column.
            expr = f"regexp_replace({expr}, '\\.0+$', '')"
        if col.kind in ("timestamp", "number", "bool"):
            raw = _quote(col.name)
            bad = f"{raw} IS NOT NULL AND trim(CAST({raw} AS VARCHAR)) <> '' AND ({expr}) IS NULL"
            n_bad = con.execute(f"SELECT count(*) FROM {src} WHERE {bad}").fetchall()[0][0]
            if n_bad:
                what = {
                    "timestamp": "unparseable timestamp",
                    "number": "non-numeric value",
                    "bool": "not a boolean",
                }
                raise DataValidationError(
                    path,
                    col.name,
                    f"{n_bad} row(s) with {what[col.kind]}",
                    _examples(con, src, col.name, bad),
                )
            if col.required:
                null_pred = f"({expr}) IS NULL"
                n_null = con.execute(f"SELECT count(*) FROM {src} WHERE {null_pred}").fetchall()[0][0]
                if n_null and col.name != "customer_id":
                    raise DataValidationError(
                        path,
                        col.name,
                        f"{n_null} row(s) with an empty required value",
                        _examples(con, src, col.name, null_pred),
                    )
        selects.append(f"{expr} AS {_quote(col.name)}")
    if spec.keep_extra:
        known = {c.name for c in spec.columns}
        selects += [_quote(c) for c in types if c not in known]

    report = TableReport(file=str(path))
    report.rows_read = con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    con.execute(f"CREATE OR REPLACE TEMP VIEW typed_{spec.name} AS SELECT {', '.join(selects)} FROM {src}")
    typed = f"typed_{spec.name}"
    no_customer = (
        con.execute(f"SELECT count(*) FROM {typed} WHERE customer_id IS NULL").fetchall()[0][0]
        if spec.column("customer_id")
        else 0
    )
    key_filter = "WHERE customer_id IS NOT NULL" if spec.column("customer_id") else ""
    if spec.name == "offer_catalog":
        key_filter = "WHERE offer_id IS NOT NULL"
    if spec.name == "customers":
        # One row per customer: the first row wins when a customer is listed twice.
        body = f"SELECT * FROM {typed} {key_filter} QUALIFY row_number() OVER (PARTITION BY customer_id) = 1"
    else:
        body = f"SELECT DISTINCT * FROM {typed} {key_filter}"
    con.execute(f"CREATE OR REPLACE TABLE {spec.name} AS {body}")
    report.rows_kept = con.execute(f"SELECT count(*) FROM {spec.name}").fetchall()[0][0]
    report.oddities["rows_without_customer"] = no_customer
    report.oddities["duplicates_dropped"] = report.rows_read - no_customer - report.rows_kept
    if spec.name == "surveys":
        _drop_bad_surveys(con, report)
    if spec.name == "transactions":
        returns, zero = con.execute(
            "SELECT count(*) FILTER (WHERE amount < 0), count(*) FILTER (WHERE amount = 0) FROM transactions"
        ).fetchall()[0]
        report.oddities["returns"] = returns
        report.oddities["zero_amount"] = zero
    return report


def _drop_bad_surveys(con: duckdb.DuckDBPyConnection, report: TableReport) -> None:
    """Drop and count survey answers no feature can use: an unknown kind, or a score off the kind's scale.

    Like rows without a customer they are unusable rather than malformed, so they are counted, not fatal; kept,
    an NPS of 42 would skew the average-score features and an unknown kind would still count as a survey.
    """
    con.execute("UPDATE surveys SET kind = lower(kind)")
    known = ", ".join(f"'{k}'" for k in SURVEY_KINDS)
    in_range = " OR ".join(f"(kind = '{k}' AND score BETWEEN {lo} AND {hi})" for k, (lo, hi) in SURVEY_KINDS.items())
    usable = f"coalesce({in_range}, false)"  # a missing kind makes the test NULL, which must count as unusable
    unknown, off_scale = con.execute(
        f"SELECT count(*) FILTER (WHERE kind IS NULL OR kind NOT IN ({known})), "
        f"count(*) FILTER (WHERE kind IN ({known}) AND NOT {usable}) FROM surveys"
    ).fetchall()[0]
    con.execute(f"DELETE FROM surveys WHERE NOT {usable}")
    report.oddities["unknown_kind_dropped"] = unknown
    report.oddities["score_out_of_range_dropped"] = off_scale
    report.rows_kept -= unknown + off_scale


def _create_empty(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> None:
    cols = ", ".join(f"{_quote(c.name)} {_SQL_TYPES[c.kind]}" for c in spec.columns)
    con.execute(f"CREATE OR REPLACE TABLE {spec.name} ({cols})")


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection with the session settings the pipeline relies on."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def load_data_dir(
    data_dir: Path, con: duckdb.DuckDBPyConnection | None = None, tables: Iterable[str] | None = None
) -> tuple[duckdb.DuckDBPyConnection, LoadReport]:
    """Validate and load every canonical table found in ``data_dir`` into DuckDB.

    Args:
        data_dir: Directory with ``<table>.parquet`` or ``<table>.csv`` files.
        con: Connection to load into; a new in-memory one when None.
        tables: Restrict loading to these tables (others are created empty).

    Returns:
        The connection (tables named as in :data:`features.schema.TABLES`) and a report of what was read.

    Raises:
        FileNotFoundError: ``data_dir`` or the required ``transactions`` file is missing.
        DataValidationError: a file breaks the contract (missing column, bad timestamp or number).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    con = con or connect()
    wanted = set(tables) if tables is not None else set(TABLES)
    report = LoadReport(data_dir=str(data_dir))
    for name, spec in TABLES.items():
        path = find_table_file(data_dir, name) if name in wanted else None
        if path is None:
            if spec.required:
                raise FileNotFoundError(f"{data_dir}: required table '{name}' (.parquet or .csv) not found")
            _create_empty(con, spec)
            report.tables[name] = TableReport(file=None)
            continue
        report.file_hashes[path.name] = _file_hash(path)
        report.tables[name] = _load_table(con, spec, path)
    for line in report.summary_lines():
        log.info(line)
    lock_down(con)
    return con, report


def load_frames(
    tables: dict[str, pd.DataFrame], con: duckdb.DuckDBPyConnection | None = None
) -> duckdb.DuckDBPyConnection:
    """Validate and load in-memory tables exactly as :func:`load_data_dir` loads files.

    Args:
        tables: Canonical table name to frame; ``transactions`` is required.
        con: Connection to load into; a new in-memory one when None.

    Returns:
        The connection with every canonical table present (absent ones empty).
    """
    if "transactions" not in tables:
        raise ValueError("required table 'transactions' not given")
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}; known: {sorted(TABLES)}")
    con = con or connect()
    for name, spec in TABLES.items():
        if name not in tables:
            _create_empty(con, spec)
            continue
        view = f"frame_{name}"
        con.register(view, tables[name])
        _load_table(con, spec, Path(f"<{name} frame>"), relation=view)
        con.unregister(view)
    lock_down(con)
    return con


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Forbid file and network access once the tables are loaded: later queries only read loaded tables.

    DuckDB refuses to turn it back on for the connection's lifetime, so no later SQL text can read a file.
    """
    con.execute("SET enable_external_access = false")


def attribute_columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Static attribute columns of ``customers`` (beyond the canonical ones) with their DuckDB types."""
    known = {c.name for c in TABLES["customers"].columns}
    return [(str(r[0]), str(r[1])) for r in con.execute("DESCRIBE customers").fetchall() if r[0] not in known]
