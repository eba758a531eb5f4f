"""Decision log in PostgreSQL (``CXPREDICT_DECISION_LOG=postgresql://...``), shared by every replica.

Same promises as :class:`serving.decision_log.SQLiteDecisionLog`: a writer thread commits whatever has queued up
in one transaction (group commit) and a submitter's future completes only after that commit; feedback is
idempotent (the first record of a (decision, outcome) wins); the schema is created under a transaction-scoped
advisory lock, so replicas starting together cannot race each other's migration.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from serving.decision_log import (
    _COLUMNS,
    CONTACT_WHERE,
    EXPORT_DECISIONS,
    EXPORT_FEEDBACK,
    FAILURE_MEMORY_SECONDS,
    LOCK_TIMEOUT_SECONDS,
    MAX_GROUP,
    MAX_QUEUED,
    DecisionLogBusy,
    DecisionLogError,
    FeedbackReceipt,
    FeedbackRow,
    IngestResult,
    UnknownDecisions,
    _finite,
    _row,
    _settle,
    decision_rows,
    exported_decisions,
)

#: Any fixed 64-bit number: the key of the advisory lock that serialises migrations across replicas.
MIGRATION_LOCK = 0x6378_7072_6564_6C67
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, customer_id TEXT NOT NULL,
        endpoint TEXT NOT NULL, experiment TEXT, variant TEXT, model_versions TEXT NOT NULL, context TEXT NOT NULL,
        outputs TEXT NOT NULL, propensity DOUBLE PRECISION, offer_id TEXT, shadow INTEGER NOT NULL DEFAULT 0,
        pre_value DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id)",
    "CREATE INDEX IF NOT EXISTS decisions_experiment ON decisions (experiment, variant)",
    "CREATE INDEX IF NOT EXISTS decisions_customer_ts ON decisions (customer_id, ts)",
    """CREATE TABLE IF NOT EXISTS feedback (
        decision_id TEXT NOT NULL, outcome TEXT NOT NULL, value DOUBLE PRECISION, ts DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (decision_id, outcome))""",
)
_INSERT = (
    f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
    "ON CONFLICT (decision_id) DO NOTHING"
)
_Op = Callable[[psycopg.Connection], Any]
_STOP = object()
#: Seconds to wait for a connection (a new one when the database was down): less than a request's timeout.
CONNECT_TIMEOUT_SECONDS = 3
#: Seconds the readiness probe waits for the database.
PROBE_TIMEOUT_SECONDS = 1.0
#: Longest wait for a lock held by another session (a row another transaction is writing, the migration lock):
#: then the statement fails (the service answers 503) instead of waiting for ever.
LOCK_TIMEOUT_MS = int(LOCK_TIMEOUT_SECONDS * 1000)


def migrate(con: psycopg.Connection) -> None:
    """Create the tables if needed, one replica at a time (the lock ends with the transaction)."""
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        for statement in _SCHEMA:
            con.execute(statement)


class PostgresDecisionLog:
    """Decision log in one PostgreSQL database.

    Args:
        url: ``postgresql://user@host:port/db``.
        pool_size: Most connections this process holds (writer thread plus readers).
    """

    def __init__(self, url: str, pool_size: int = 4):
        self.url = url
        try:
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                open=True,
                timeout=CONNECT_TIMEOUT_SECONDS,
                kwargs={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"},
                # A connection broken while the database was down is replaced when taken, not used for a commit.
                check=ConnectionPool.check_connection,
            )
            with self._pool.connection() as con:
                migrate(con)
        except (psycopg.Error, Exception) as exc:
            raise DecisionLogError(f"decision log {_safe(url)} cannot be opened: {exc}") from exc
        self._queue: queue.Queue[Any] = queue.Queue()
        #: When the last commit failed and why (cleared by a commit that succeeds).
        self._failed: tuple[float, str] | None = None
        self._seq = itertools.count()
        self.commits = 0
        self.write_errors = 0
        self._writer = threading.Thread(target=self._write_loop, name="cxpredict-decision-log-pg", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(nxt)
                    break
                group.append(nxt)
            _settle(self._commit(group))

    def _commit(self, group: list[tuple[_Op, Future[Any]]]) -> list[tuple[Future[Any], Any, BaseException | None]]:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self._pool.connection() as con, con.transaction():
                for op, future in group:
                    try:
                        with con.transaction():  # a savepoint: one bad operation fails only its caller
                            results.append((future, op(con), None))
                    except psycopg.Error as exc:
                        results.append((future, None, exc))
            self.commits += 1
            self._failed = None
        except Exception as exc:
            self.write_errors += 1
            self._failed = (time.monotonic(), f"{type(exc).__name__}: {exc}")
            return [(future, None, exc) for _, future in group]
        return results

    def _enqueue(self, op: _Op) -> Future[Any]:
        future: Future[Any] = Future()
        if not self._writer.is_alive():
            future.set_exception(RuntimeError(f"decision log {_safe(self.url)} is closed"))
            return future
        if self._queue.qsize() >= MAX_QUEUED:
            future.set_exception(DecisionLogBusy(f"decision log {_safe(self.url)}: {MAX_QUEUED} writes already queued"))
            return future
        self._queue.put((op, future))
        return future

    def problem(self) -> str | None:
        """Why the log cannot be written right now (database unreachable, queue full, a recent failure), or None."""
        if self._queue.qsize() >= MAX_QUEUED:
            return f"{MAX_QUEUED} writes are queued"
        failed = self._failed
        if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY_SECONDS:
            return f"the last write failed: {failed[1]}"
        try:
            with self._pool.connection(timeout=PROBE_TIMEOUT_SECONDS) as con:
                con.execute("SELECT 1")
        except Exception as exc:
            return f"{_safe(self.url)} is unreachable: {type(exc).__name__}"
        return None

    def submit(self, decisions: Sequence[Mapping[str, Any]], background: bool = False) -> Future[None]:
        """Queue decisions for the next group commit; the future completes once they are committed."""
        rows = [_row(d) for d in decisions]

        def insert(con: psycopg.Connection) -> None:
            with con.cursor() as cur:
                cur.executemany(_INSERT, rows)

        return self._enqueue(insert)

    def missing_decisions(self, decision_ids: Sequence[str]) -> list[int]:
        """Positions of the ids this log does not hold."""
        distinct = list(dict.fromkeys(decision_ids))
        with self._pool.connection() as con:
            held = {
                r[0] for r in con.execute("SELECT decision_id FROM decisions WHERE decision_id = ANY(%s)", (distinct,))
            }
        return [i for i, d in enumerate(decision_ids) if d not in held]

    def add_feedback(
        self, decision_id: str, outcome: str, value: float | None, ts: float | None = None
    ) -> FeedbackReceipt:
        """Store feedback for a known decision (of any replica); the first record of an outcome wins."""
        row = (decision_id, outcome, _finite(value), float(ts if ts is not None else time.time()))

        def op(con: psycopg.Connection) -> FeedbackReceipt:
            if con.execute("SELECT 1 FROM decisions WHERE decision_id = %s", (decision_id,)).fetchone() is None:
                return FeedbackReceipt(known=False)
            cur = con.execute("INSERT INTO feedback VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", row)
            if cur.rowcount:
                return FeedbackReceipt(known=True, value=row[2])
            (stored,) = con.execute(
                "SELECT value FROM feedback WHERE decision_id = %s AND outcome = %s", (decision_id, outcome)
            ).fetchone()
            return FeedbackReceipt(known=True, duplicate=True, value=stored)

        return self._enqueue(op).result()

    def ingest_feedback(self, rows: Sequence[FeedbackRow]) -> IngestResult:
        """Store many feedback rows in one transaction, all or nothing.

        Raises:
            UnknownDecisions: some rows name decision ids the log never issued (nothing is stored).
        """
        now = time.time()
        values = [(r.decision_id, r.outcome, _finite(r.value), float(r.ts if r.ts is not None else now)) for r in rows]

        def op(con: psycopg.Connection) -> IngestResult | UnknownDecisions:
            ids = list({v[0] for v in values})
            known = {r[0] for r in con.execute("SELECT decision_id FROM decisions WHERE decision_id = ANY(%s)", (ids,))}
            unknown = [(i, v[0]) for i, v in enumerate(values) if v[0] not in known]
            if unknown:
                return UnknownDecisions([u[1] for u in unknown], [u[0] for u in unknown])
            inserted = 0
            with con.cursor() as cur:
                for v in values:
                    cur.execute("INSERT INTO feedback VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", v)
                    inserted += cur.rowcount
            return IngestResult(inserted=inserted, duplicates=len(values) - inserted)

        result = self._enqueue(op).result()
        if isinstance(result, UnknownDecisions):
            raise result
        return result

    def experiment_rows(self, experiment: str) -> list[dict[str, Any]]:
        """Every decision of an experiment (shadow included) with its feedback."""
        keys = ("decision_id", "ts", "customer_id", "variant", "propensity", "offer_id", "shadow", "pre_value")
        with self._pool.connection() as con:
            decisions = con.execute(
                f"SELECT {', '.join(keys)} FROM decisions WHERE experiment = %s ORDER BY ts", (experiment,)
            ).fetchall()
            feedback = con.execute(
                "SELECT f.decision_id, f.outcome, f.value, f.ts FROM feedback f JOIN decisions d "
                "ON d.decision_id = f.decision_id WHERE d.experiment = %s",
                (experiment,),
            ).fetchall()
        by_decision: dict[str, list[dict[str, Any]]] = {}
        for decision_id, outcome, value, ts in feedback:
            by_decision.setdefault(decision_id, []).append({"outcome": outcome, "value": value, "ts": ts})
        out = []
        for row in decisions:
            item = dict(zip(keys, row, strict=True))
            item["shadow"] = bool(item["shadow"])
            item["feedback"] = by_decision.get(item["decision_id"], [])
            out.append(item)
        return out

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the pool."""
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join()
        self._pool.close()

    # --- privacy: forget, export, retention ----------------------------------------------------------------
    def forget(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """Erase customers' decisions and the feedback sent against them; counts of rows erased.

        The tables are vacuumed afterwards, so the dead row versions do not linger in their pages.
        """
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        if not ids:
            return {"decisions": 0, "feedback": 0}

        def op(con: psycopg.Connection) -> dict[str, int]:
            feedback = con.execute(
                "DELETE FROM feedback WHERE decision_id IN "
                "(SELECT decision_id FROM decisions WHERE customer_id = ANY(%s))",
                (ids,),
            ).rowcount
            decisions = con.execute("DELETE FROM decisions WHERE customer_id = ANY(%s)", (ids,)).rowcount
            return {"decisions": decisions, "feedback": feedback}

        counts = self._enqueue(op).result()
        if counts["decisions"] or counts["feedback"]:
            self._vacuum()
        return counts

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything the log holds about one customer: their decisions, each with its feedback."""
        with self._pool.connection() as con:
            rows = con.execute(EXPORT_DECISIONS, (customer_id,)).fetchall()
            feedback = con.execute(EXPORT_FEEDBACK, (customer_id,)).fetchall()
        return {"decisions": exported_decisions(rows, feedback)}

    def purge(self, before_ts: float) -> dict[str, int]:
        """Erase decisions made before ``before_ts`` (epoch seconds) with their feedback, and older feedback."""

        def op(con: psycopg.Connection) -> dict[str, int]:
            feedback = con.execute(
                "DELETE FROM feedback WHERE ts < %s "
                "OR decision_id IN (SELECT decision_id FROM decisions WHERE ts < %s)",
                (before_ts, before_ts),
            ).rowcount
            decisions = con.execute("DELETE FROM decisions WHERE ts < %s", (before_ts,)).rowcount
            return {"decisions": decisions, "feedback": feedback}

        return self._enqueue(op).result()

    def _vacuum(self) -> None:
        # VACUUM cannot run inside a transaction: a connection of its own, in autocommit mode.
        with psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            options=f"-c lock_timeout={LOCK_TIMEOUT_MS}",
        ) as con:
            con.execute("VACUUM decisions, feedback")

    # --- contact policy (issue 17) -------------------------------------------------------------------------
    def contacts(self, customer_ids: Sequence[str], since: float) -> dict[str, int]:
        """Offers made to each customer since ``since`` by any replica (see the protocol)."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        with self._pool.connection() as con:
            rows = con.execute(
                "SELECT customer_id, count(*) FROM decisions WHERE customer_id = ANY(%s) AND ts >= %s "
                f"AND {CONTACT_WHERE} GROUP BY customer_id",
                (ids, float(since)),
            ).fetchall()
        return {c: int(n) for c, n in rows}

    def decisions_since(self, since: float | None = None) -> list[dict[str, Any]]:
        """Served decisions from ``since`` on (all when None), oldest first, with outputs and feedback."""
        start = float(since) if since is not None else float("-inf")
        with self._pool.connection() as con:
            rows = con.execute(
                "SELECT decision_id, ts, customer_id, endpoint, experiment, variant, offer_id, pre_value, outputs "
                "FROM decisions WHERE shadow = 0 AND ts >= %s ORDER BY ts",
                (start,),
            ).fetchall()
            feedback = con.execute(
                "SELECT f.decision_id, f.outcome, f.value FROM feedback f JOIN decisions d "
                "ON d.decision_id = f.decision_id WHERE d.shadow = 0 AND d.ts >= %s",
                (start,),
            ).fetchall()
        return decision_rows(rows, feedback)


def _safe(url: str) -> str:
    """The URL without a password (for messages)."""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        user = rest.split(":", 1)[0]
        return f"{scheme}//{user}:***@{rest.split('@', 1)[1]}"
    return url
