"""The online feature store: every customer's latest feature row, for millisecond lookups by the service.

``materialize`` computes the rows with the same definitions as training (:func:`features.pipeline.build_features`)
and writes them here. The embedded store is one SQLite file per generation, swapped in atomically, so the
service can keep reading while a new generation is written and picks it up on its next lookup. Anything that
implements :class:`OnlineStore` (for instance a Redis hash per customer) can replace it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from features.private_files import create_private_file, private_dir

STORE_FILE = "features.sqlite"


class OnlineStore(Protocol):
    """What the service needs from an online store."""

    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's latest feature row, or None when unknown."""
        ...

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Rows of the known customers among ``customer_ids``."""
        ...

    def metadata(self) -> dict[str, Any]:
        """``as_of``, ``feature_set_version``, ``columns`` and ``customers`` of the current generation."""
        ...

    def generation(self) -> str | None:
        """An id that changes whenever a new generation is swapped in; None when the store holds none."""
        ...

    def forget(self, customer_ids: Iterable[str]) -> int:
        """Erase these customers' rows from every generation held; the number of rows erased."""
        ...


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def decode_row(raw: str | bytes) -> dict[str, Any]:
    """A stored feature row from its JSON text.

    orjson reads the usual row about five times as fast as the standard library (a lookup's largest cost); a row
    holding an infinite value, which the standard library writes as ``Infinity`` and orjson refuses, is read by
    the standard library.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def write_store(directory: Path, frame: Any, as_of: datetime, feature_set_version: str) -> Path:
    """Write a new generation of the embedded store from a feature frame and swap it in atomically.

    Args:
        directory: Store directory (created).
        frame: pandas frame with ``customer_id`` and feature columns.
        as_of: The cut-off the rows were computed at.
        feature_set_version: Version of the definitions that computed them.

    Returns:
        The store file path.
    """
    directory = private_dir(Path(directory))
    tmp = directory / f".{STORE_FILE}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    create_private_file(tmp)  # owner-only from the start: SQLite keeps an existing file's mode
    columns = [c for c in frame.columns if c != "customer_id"]
    con = sqlite3.connect(tmp)
    try:
        con.execute("CREATE TABLE features (customer_id TEXT PRIMARY KEY, row TEXT NOT NULL) WITHOUT ROWID")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        ids = frame["customer_id"].astype(str).tolist()
        records = frame[columns].to_dict("records")
        con.executemany(
            "INSERT INTO features VALUES (?, ?)",
            ((cid, json.dumps({k: _clean(v) for k, v in rec.items()})) for cid, rec in zip(ids, records, strict=True)),
        )
        meta = {
            "as_of": as_of.isoformat(),
            "feature_set_version": feature_set_version,
            "columns": columns,
            "customers": len(ids),
        }
        con.executemany("INSERT INTO meta VALUES (?, ?)", ((k, json.dumps(v)) for k, v in meta.items()))
        con.commit()
    finally:
        con.close()
    target = directory / STORE_FILE
    os.replace(tmp, target)
    return target


class SQLiteOnlineStore:
    """Reader of the embedded store; reopens the file when a new generation has been swapped in."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / STORE_FILE
        self._file = str(self.path)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._inode: int | None = None

    def _con(self) -> sqlite3.Connection:
        try:
            # Checked on every lookup so a refreshed store is read at once; os.stat is a third of Path.stat's cost.
            inode = os.stat(self._file).st_ino
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"online store {self.path} not found: run `cxpredict features materialize` (or `cxpredict demo`)"
            ) from exc
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "inode", None) != inode:
            if con is not None:
                con.close()
            con = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            self._local.con, self._local.inode = con, inode
        return con

    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's latest feature row, or None when unknown."""
        row = self._con().execute("SELECT row FROM features WHERE customer_id = ?", (customer_id,)).fetchone()
        return decode_row(row[0]) if row else None

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Rows of the known customers among ``customer_ids``."""
        ids = list(dict.fromkeys(customer_ids))
        out: dict[str, dict[str, Any]] = {}
        con = self._con()
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for cid, row in con.execute(f"SELECT customer_id, row FROM features WHERE customer_id IN ({marks})", chunk):
                out[cid] = decode_row(row)
        return out

    def generation(self) -> str | None:
        """The store file's inode (a swap-in replaces the file), or None when there is no store yet."""
        try:
            return str(os.stat(self._file).st_ino)
        except FileNotFoundError:
            return None

    def metadata(self) -> dict[str, Any]:
        """``as_of``, ``feature_set_version``, ``columns`` and ``customers`` of the current generation."""
        return {k: json.loads(v) for k, v in self._con().execute("SELECT key, value FROM meta")}

    def forget(self, customer_ids: Iterable[str]) -> int:
        """Erase customers: a copy of the store without their rows is swapped in (readers open files immutable).

        The copy is vacuumed, so no free page keeps a deleted row's bytes; the old file is replaced, not edited.
        Returns 0 when there is no store. Run it while no ``materialize`` writes a new generation.
        """
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        if not ids or not self.path.exists():
            return 0
        tmp = self.path.with_name(f".{STORE_FILE}.forget.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        create_private_file(tmp)
        src = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=MEMORY")  # no journal file holding the old pages, even briefly
            dst.execute("PRAGMA secure_delete=ON")
            erased = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                cur = dst.execute(f"DELETE FROM features WHERE customer_id IN ({','.join('?' * len(chunk))})", chunk)
                erased += cur.rowcount
            dst.execute("UPDATE meta SET value = (SELECT count(*) FROM features) WHERE key = 'customers'")
            dst.commit()
            dst.execute("VACUUM")
        except BaseException:
            dst.close()
            tmp.unlink(missing_ok=True)
            raise
        finally:
            src.close()
        dst.close()
        if erased:
            os.replace(tmp, self.path)
        else:
            tmp.unlink(missing_ok=True)
        return erased


def merge_overrides(stored: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A feature row where request-supplied values replace stored ones (cold start when nothing is stored)."""
    row = dict(stored or {})
    row.update(overrides or {})
    return row
