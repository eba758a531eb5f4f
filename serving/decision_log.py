"""The durable log of every decision the service made, and of the feedback sent against it (CONTRACT §5).

The embedded implementation is one SQLite database in WAL mode at ``$CXPREDICT_HOME/decisions.sqlite``:
a decision is one INSERT (committed per request), feedback is idempotent on ``(decision_id, outcome)``.
Anything implementing :class:`DecisionLog` (a queue, a warehouse table) can replace it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

DECISIONS_FILE = "decisions.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    customer_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    experiment TEXT,
    variant TEXT,
    model_versions TEXT NOT NULL,
    context TEXT NOT NULL,
    outputs TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id);
CREATE INDEX IF NOT EXISTS decisions_experiment ON decisions (experiment, variant);
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    value REAL,
    ts REAL NOT NULL,
    PRIMARY KEY (decision_id, outcome)
) WITHOUT ROWID;
"""

_COLUMNS = ("decision_id", "ts", "customer_id", "endpoint", "experiment", "variant", "model_versions", "context")


class DecisionLog(Protocol):
    """What the service needs from a decision log."""

    def record(self, decision: dict[str, Any]) -> None:
        """Store one decision (keys: ``decision_id``, ``customer_id``, ``endpoint``, ``model_versions``,...)."""
        ...

    def record_many(self, decisions: Iterable[dict[str, Any]]) -> None:
        """Store several decisions in one write."""
        ...

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision, or None."""
        ...

    def record_feedback(self, decision_id: str, outcome: str, value: float | None) -> bool:
        """Store feedback; False when the decision id is unknown. Repeating it changes nothing."""
        ...


def _row(decision: dict[str, Any]) -> tuple[Any, ...]:
    experiment = decision.get("experiment") or {}
    outputs = {k: v for k, v in decision.items() if k not in ("context", "model_versions", "experiment")}
    return (
        decision["decision_id"],
        float(decision.get("ts") or time.time()),
        decision["customer_id"],
        decision.get("endpoint", "personalize"),
        experiment.get("name"),
        experiment.get("variant"),
        json.dumps(decision.get("model_versions") or {}),
        json.dumps(decision.get("context") or {}, default=str),
        json.dumps(outputs, default=str),
    )


class SQLiteDecisionLog:
    """Decision log in one SQLite file (WAL, ``synchronous=NORMAL``: durable across process crashes).

    Args:
        path: Database file (its directory is created).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)

    def record(self, decision: dict[str, Any]) -> None:
        """Store one decision (one INSERT, committed at once)."""
        with self._lock:
            self._con.execute("INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(decision))

    def record_many(self, decisions: Iterable[dict[str, Any]]) -> None:
        """Store several decisions in one transaction."""
        rows = [_row(d) for d in decisions]
        with self._lock:
            self._con.execute("BEGIN")
            try:
                self._con.executemany("INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision with its outputs and feedback, or None."""
        with self._lock:
            row = self._con.execute(
                f"SELECT {', '.join(_COLUMNS)}, outputs FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
            if row is None:
                return None
            feedback = self._con.execute(
                "SELECT outcome, value, ts FROM feedback WHERE decision_id = ? ORDER BY ts", (decision_id,)
            ).fetchall()
        out = dict(zip(_COLUMNS, row[:-1], strict=True))
        out["model_versions"] = json.loads(out["model_versions"])
        out["context"] = json.loads(out["context"])
        out["outputs"] = json.loads(row[-1])
        out["feedback"] = [{"outcome": o, "value": v, "ts": t} for o, v, t in feedback]
        return out

    def record_feedback(self, decision_id: str, outcome: str, value: float | None) -> bool:
        """Store feedback for a known decision; the first record of an outcome wins, repeats are no-ops.

        Returns:
            False when ``decision_id`` is unknown (nothing is stored).
        """
        with self._lock:
            known = self._con.execute("SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
            if known is None:
                return False
            self._con.execute(
                "INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?)", (decision_id, outcome, value, time.time())
            )
        return True

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._con.close()
