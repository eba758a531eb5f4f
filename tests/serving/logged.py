"""What tests write to and read back from a decision log beyond the service's own calls.

Built on the log's protocol (``submit``, ``export``) and plain SQL on its SQLite file or PostgreSQL database, so
the production classes carry nothing that only tests use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from serving.decision_log import DecisionLog

#: Seconds a test waits for a write before it fails (a hung writer fails the test instead of stalling it).
WRITE_WAIT_SECONDS = 30


def record(log: DecisionLog, *decisions: Mapping[str, Any]) -> None:
    """Store decisions in one transaction and wait until they are durable (the write's error, if any, is raised)."""
    log.submit(list(decisions)).result(timeout=WRITE_WAIT_SECONDS)


def query(log: DecisionLog, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders) run on a new connection to the log's file or database."""
    url = getattr(log, "url", None)
    if url is not None:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as con:
            return [tuple(r) for r in con.execute(sql.replace("?", "%s"), tuple(params)).fetchall()]
    con = sqlite3.connect(log.path, timeout=5)  # type: ignore[attr-defined]
    try:
        return con.execute(sql, tuple(params)).fetchall()
    finally:
        con.close()


def read_decision(log: DecisionLog, decision_id: str) -> dict[str, Any] | None:
    """A stored decision as ``export`` shows it (outputs parsed, with its feedback), or None."""
    found = query(log, "SELECT customer_id FROM decisions WHERE decision_id = ?", (decision_id,))
    if not found:
        return None
    return next(d for d in log.export(found[0][0])["decisions"] if d["decision_id"] == decision_id)


def count(log: DecisionLog) -> int:
    """Number of stored decisions."""
    return int(query(log, "SELECT count(*) FROM decisions")[0][0])
