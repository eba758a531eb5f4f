"""Importers that turn the public data sets in ``../shared/datasets/`` into canonical tables (CONTRACT §1).

Each importer is a function ``load(source) -> {table name: DataFrame}`` taking the data set's folder:

* ``online-retail`` (folder ``uci_online_retail``): transactions, customers;
* ``complete-journey`` (``dunnhumby_complete_journey``): transactions, customers, offers, offer_catalog;
* ``hillstrom`` (``hillstrom_email``): transactions, customers, interactions, offers, offer_catalog;
* ``telco`` (``ibm_telco_churn``): transactions, customers;
* ``cdnow`` (a folder holding ``CDNOW_master.txt``; not among the shared data sets): transactions.

``run_import`` writes the tables as ``<out>/<table>.parquet`` atomically: every file is first written into a
temporary sibling folder ``<out.parent>/.<out.name>.tmp-<random>``, and only when all of them were written are
they moved into ``out``. A failure while reading or writing leaves ``out`` as it was (absent, or with its
previous content). When ``out`` already exists, the canonical table files it holds (``<table>.parquet`` or
``<table>.csv`` for every table name of ``features.schema.TABLES``) are replaced, and the ones this data set
does not produce are removed, so ``out`` never mixes two data sets; other files in ``out`` are left alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from features.importers import cdnow, complete_journey, hillstrom, online_retail, telco
from features.schema import TABLES

Importer = Callable[[Path], dict[str, pd.DataFrame]]

IMPORTERS: dict[str, Importer] = {
    "online-retail": online_retail.load,
    "complete-journey": complete_journey.load,
    "hillstrom": hillstrom.load,
    "telco": telco.load,
    "cdnow": cdnow.load,
}

__all__ = ["IMPORTERS", "Importer", "run_import"]


def _write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, frame in tables.items():
        if table not in TABLES:
            raise ValueError(f"importer produced an unknown table {table!r}; known tables: {sorted(TABLES)}")
        frame.to_parquet(folder / f"{table}.parquet", index=False)
        counts[table] = len(frame)
    return counts


def run_import(name: str, source: Path, out: Path) -> dict[str, int]:
    """Import the public data set ``name`` from ``source`` and write its canonical tables into ``out``.

    Args:
        name: One of the keys of ``IMPORTERS`` (``online-retail``, ``complete-journey``, ``hillstrom``,
            ``telco``, ``cdnow``).
        source: The data set's folder (for example ``../shared/datasets/uci_online_retail``).
        out: The data directory to write ``<table>.parquet`` files into; created when absent.

    Returns:
        The number of rows written per table.

    Raises:
        ValueError: When ``name`` is not a known importer (the message lists the valid names).
        FileNotFoundError: When ``source`` or a file the importer needs does not exist.
        NotADirectoryError: When ``out`` exists and is not a directory.
    """
    if name not in IMPORTERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(IMPORTERS))}")
    source = Path(source)
    out = Path(out)
    if not source.exists():
        raise FileNotFoundError(f"{name}: source folder {source} does not exist")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output {out} exists and is not a directory")

    tables = IMPORTERS[name](source)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        counts = _write_tables(tables, tmp)
        if not out.exists():
            # One rename publishes the whole data set at once.
            tmp.rename(out)
            return counts
        for table in counts:
            os.replace(tmp / f"{table}.parquet", out / f"{table}.parquet")
        # Drop the canonical tables this data set does not have, so ``out`` never mixes two data sets.
        for table in TABLES:
            for suffix in (".parquet", ".csv"):
                stale = out / f"{table}{suffix}"
                if stale.exists() and not (suffix == ".parquet" and table in counts):
                    stale.unlink()
        return counts
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
