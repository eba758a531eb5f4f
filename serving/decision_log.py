"""The durable log of every decision the service made, and of the feedback sent against it (CONTRACT §5).

The embedded implementation is one SQLite database in WAL mode at ``$CXPREDICT_HOME/decisions.sqlite``.
Writes go through one writer thread per process that commits whatever has queued up in a single transaction
(group commit): a request hands its decision over, keeps the event loop free while it waits, and its answer is
sent only once the commit returned — so an acknowledged decision is never lost, even when the process is
killed, while the cost of a commit is shared by every request that arrived during the previous one. A submission
that finds nothing queued and nothing being written is committed by its own thread (no hand-off to the writer and
back), unless another process holds the file's write lock: the log decides this itself, callers give no hint. WAL
lets several worker processes (and ``cxpredict ab ingest``) write to the same file; their writers take turns on a
lock file beside it (``decisions.sqlite.lock``).

Anything implementing :class:`DecisionLog` — a PostgreSQL table, a queue with acknowledgements — can replace
it: the service only calls the protocol's methods.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

try:
    import fcntl
except ImportError:  # Windows: writers fall back to SQLite's own busy wait
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DECISIONS_FILE = "decisions.sqlite"
#: Most operations committed in one transaction by the writer thread.
MAX_GROUP = 512
#: Background (shadow) records per transaction.
BACKGROUND_CHUNK = 16
#: Seconds between WAL checkpoints (run off the writer thread).
CHECKPOINT_SECONDS = 1.0

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
    outputs TEXT NOT NULL,
    propensity REAL,
    offer_id TEXT,
    shadow INTEGER NOT NULL DEFAULT 0,
    pre_value REAL
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
#: Columns added after the first release: added in place to an older database.
_ADDED_COLUMNS = {
    "propensity": "REAL",
    "offer_id": "TEXT",
    "shadow": "INTEGER NOT NULL DEFAULT 0",
    "pre_value": "REAL",
}
_COLUMNS = (
    "decision_id",
    "ts",
    "customer_id",
    "endpoint",
    "experiment",
    "variant",
    "model_versions",
    "context",
    "outputs",
    "propensity",
    "offer_id",
    "shadow",
    "pre_value",
)
_INSERT = f"INSERT OR IGNORE INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
#: Keys of a decision dict stored in their own columns rather than in ``outputs``.
_OWN_COLUMNS = frozenset({"context", "model_versions", "experiment", "propensity", "offer_id", "shadow", "pre_value"})


class DecisionLogError(ValueError):
    """The decision log file cannot be opened (not a SQLite database, unreadable, or its directory read-only)."""


class UnknownDecisions(ValueError):  # noqa: N818 - reads better at the raise site
    """Feedback names decision ids this log never issued (``ids`` lists them, ``rows`` their positions)."""

    def __init__(self, ids: Sequence[str], rows: Sequence[int]):
        shown = ", ".join(f"row {r}: {i!r}" for r, i in list(zip(rows, ids, strict=True))[:5])
        more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
        super().__init__(f"{len(ids)} feedback row(s) name unknown decision ids ({shown}{more}); nothing was stored")
        self.ids = list(ids)
        self.rows = list(rows)


@dataclass(frozen=True)
class FeedbackRow:
    """One outcome to store against a decision.

    Attributes:
        decision_id: The decision it belongs to.
        outcome: What happened (``converted``, ``clicked``...).
        value: Its value (for instance the order amount), if any.
        ts: When it happened (epoch seconds); now when None.
    """

    decision_id: str
    outcome: str
    value: float | None = None
    ts: float | None = None


@dataclass(frozen=True)
class FeedbackReceipt:
    """What storing one feedback record did.

    Attributes:
        known: The decision id was issued by the service (nothing is stored otherwise).
        duplicate: An earlier record of this (decision, outcome) exists and stands: this one was not stored.
        value: The value on record for the (decision, outcome): the earlier one for a duplicate.
    """

    known: bool
    duplicate: bool = False
    value: float | None = None


@dataclass(frozen=True)
class IngestResult:
    """What a bulk feedback load did: rows newly stored and rows that were already there."""

    inserted: int
    duplicates: int


class DecisionLog(Protocol):
    """What the service (and the ``ab`` commands) need from a decision log."""

    def submit(self, decisions: Sequence[Mapping[str, Any]], background: bool = False) -> Future[None]:
        """Queue decisions; the future completes once they are durable (or fails with the write error).

        ``background`` records (shadow scores) must never delay the acknowledgement of served ones.
        """
        ...

    def record(self, decision: Mapping[str, Any]) -> None:
        """Store one decision and wait until it is durable."""
        ...

    def record_many(self, decisions: Iterable[Mapping[str, Any]]) -> None:
        """Store several decisions and wait until they are durable."""
        ...

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision with its outputs and feedback, or None."""
        ...

    def add_feedback(
        self, decision_id: str, outcome: str, value: float | None, ts: float | None = None
    ) -> FeedbackReceipt:
        """Store feedback for a known decision (the first record of an outcome wins; a repeat changes nothing).

        Returns:
            Whether the decision id is known, and whether an earlier record of the outcome stands (its value).
        """
        ...

    def ingest_feedback(self, rows: Sequence[FeedbackRow]) -> IngestResult:
        """Store many feedback rows in one transaction, all or nothing.

        Raises:
            UnknownDecisions: some rows name decision ids the log never issued (nothing is stored).
        """
        ...

    def experiment_rows(self, experiment: str) -> list[dict[str, Any]]:
        """Every decision of an experiment with its feedback, for the report (shadow decisions included)."""
        ...

    def close(self) -> None:
        """Flush pending writes and release the store."""
        ...


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def new_decision_id() -> str:
    """A new decision id: 32 hex characters, the microsecond it was made followed by 72 random bits.

    Ids that grow with time are appended at the end of the log's primary-key B-tree; random ones (uuid4) land on
    random pages, so every commit rewrites pages all over the file and inserting gets slower as the log grows
    (``benchmarks/decision_log_ids.py``: about twice the time per row by 40,000 rows, and growing). The random
    part keeps ids unguessable and unique across workers.
    """
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(9)}"


_Outcome = tuple[Future[Any], Any, BaseException | None]


def _settle(outcomes: Sequence[_Outcome]) -> None:
    for future, result, error in outcomes:
        try:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
        except InvalidStateError:
            # Cancelled by its caller (a request that timed out while waiting): nobody reads it. Its record is
            # written all the same; raising here would end the writer thread and every later write with it.
            pass


def _dumps(value: Any) -> str:
    # orjson takes a tenth of the standard library's time for an answer (and writes NaN and infinities as null,
    # valid JSON); what it refuses (integers beyond 64 bits, keys that are not strings, from a caller's context)
    # the standard library writes.
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, default=str)


def _row(decision: Mapping[str, Any]) -> tuple[Any, ...]:
    experiment = decision.get("experiment") or {}
    outputs = {k: v for k, v in decision.items() if k not in _OWN_COLUMNS}
    return (
        decision["decision_id"],
        float(decision.get("ts") or time.time()),
        decision["customer_id"],
        decision.get("endpoint", "personalize"),
        experiment.get("name"),
        experiment.get("variant"),
        _dumps(decision.get("model_versions") or {}),
        _dumps(decision.get("context") or {}),
        _dumps(outputs),
        _finite(decision.get("propensity")),
        decision.get("offer_id"),
        1 if decision.get("shadow") else 0,
        _finite(decision.get("pre_value")),
    )


_Op = Callable[[sqlite3.Connection], Any]
_STOP = object()


class SQLiteDecisionLog:
    """Decision log in one SQLite file (WAL, ``synchronous=NORMAL``: a commit survives a process crash).

    Args:
        path: Database file (its directory is created).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._read_lock = threading.Lock()
        #: Held while a transaction is written, by the writer thread or by a submitting thread (see submit).
        self._commit_lock = threading.Lock()
        self._closed = False
        # Writers of every process take this file's lock around each transaction (see _lock_file).
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DecisionLogError(f"decision log {self.path}: cannot create its lock file {lock_path}: {exc}") from exc
        opened: list[sqlite3.Connection] = []
        try:
            # Switching a new file to WAL fails at once ("database is locked", no busy wait) while another process
            # does the same: processes opening a fresh log together take turns.
            self._lock_file()
            try:
                self._write_con = self._connect(opened)
                self._write_con.executescript(_SCHEMA)
                have = {r[1] for r in self._write_con.execute("PRAGMA table_info(decisions)").fetchall()}
                for column, kind in _ADDED_COLUMNS.items():
                    if column not in have:
                        self._write_con.execute(f"ALTER TABLE decisions ADD COLUMN {column} {kind}")
                self._read_con = self._connect(opened)
                # A submitting thread may be the event loop: it must never wait for another process's write lock.
                self._direct_con = self._connect(opened, busy_timeout_ms=0)
            finally:
                self._unlock_file()
        except BaseException as exc:
            # A service that cannot start must not leave connections and the lock descriptor behind (tests,
            # a caller that retries).
            for con in opened:
                con.close()
            os.close(self._lock_fd)
            if isinstance(exc, sqlite3.Error | OSError):  # OSError: the file lock (ENOLCK on some network disks)
                raise DecisionLogError(
                    f"decision log {self.path} cannot be opened: {exc} (move the file away to start a new log)"
                ) from exc
            raise
        # Served decisions (priority 0) always go before background records (1); the stop marker goes last (2).
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self.commits = 0
        self.write_errors = 0
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="cxpredict-decision-log", daemon=True)
        self._writer.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="cxpredict-wal-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _connect(
        self, opened: list[sqlite3.Connection] | None = None, busy_timeout_ms: int = 30_000
    ) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_ms / 1000)
        if opened is not None:
            opened.append(con)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # A checkpoint stalls the commit that runs it, so a separate thread runs them and no request waits on one.
        con.execute("PRAGMA wal_autocheckpoint=0")
        return con

    def _checkpoint_loop(self) -> None:
        con = self._connect()
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    # PASSIVE never waits for or blocks the writer; what it cannot copy now is copied next time.
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    log.warning("decision log checkpoint failed: %s", exc)
        finally:
            con.close()

    # --- the writer thread -------------------------------------------------------------------------------
    def _write_loop(self) -> None:
        con = self._write_con
        while True:
            priority, _, item = self._queue.get()
            if item is _STOP:
                return
            group = [item]
            # Background records go one operation per transaction, so a served decision never waits behind many.
            limit = MAX_GROUP if priority == 0 else 1
            while len(group) < limit:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt[0] != priority:
                    self._queue.put(nxt)
                    break
                group.append(nxt[2])
            try:
                with self._commit_lock:
                    self._lock_file()
                    try:
                        outcome = self._commit(con, group)
                    finally:
                        self._unlock_file()
            except Exception as exc:  # the file lock failed (ENOLCK on some network file systems): keep writing
                self.write_errors += 1
                log.error("decision log %s: cannot write (%d operations): %r", self.path, len(group), exc)
                outcome = [(future, None, exc) for _, future in group]
            # Woken only once both locks are free, so a caller's next lone decision can take the direct path.
            _settle(outcome)

    def _lock_file(self, wait: bool = True) -> bool:
        """Take the cross-process write lock; False if ``wait`` is off and another process holds it."""
        # SQLite's busy handler polls with growing sleeps; a kernel file lock wakes the waiter the moment it is
        # released (benchmarks/decision_log_processes.py measures both).
        if fcntl is None:
            return True
        if wait:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            return True
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held elsewhere (BlockingIOError), or failing: the writer thread reports it to the caller
            return False
        return True

    def _unlock_file(self) -> None:
        if fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _commit(
        self, con: sqlite3.Connection, group: list[tuple[_Op, Future[Any]]], begun: bool = False
    ) -> list[_Outcome]:
        """Run ``group`` in one transaction; return each future's outcome, to be settled after the locks are freed."""
        results: list[_Outcome] = []
        try:
            if not begun:
                con.execute("BEGIN IMMEDIATE")
            for i, (op, future) in enumerate(group):
                # A savepoint per operation: one failing operation (a bad row) fails only its own caller.
                con.execute(f"SAVEPOINT op{i}")
                try:
                    results.append((future, op(con), None))
                    con.execute(f"RELEASE op{i}")
                except sqlite3.Error as exc:
                    con.execute(f"ROLLBACK TO op{i}")
                    con.execute(f"RELEASE op{i}")
                    results.append((future, None, exc))
            con.execute("COMMIT")
            self.commits += 1
        except BaseException as exc:
            self.write_errors += 1
            log.exception("decision log commit failed (%d operations)", len(group))
            if con.in_transaction:
                con.execute("ROLLBACK")
            return [(future, None, exc) for _, future in group]
        return results

    def _commit_here(self, op: _Op) -> Future[Any] | None:
        """Commit ``op`` on the calling thread if no other write is queued or running; None if it must queue."""
        # A lone request saves the two thread wake-ups of the hand-off (+18-27% req/s at 1 connection on top of
        # inline scoring, ad hoc A/B runs). Not under load: a scoring thread committing its own batches was slower.
        if not self._queue.empty() or not self._commit_lock.acquire(blocking=False):
            return None
        try:
            # Another process is writing: the writer thread waits for it, not us.
            if self._closed or not self._queue.empty() or not self._lock_file(wait=False):
                return None
            try:
                try:
                    self._direct_con.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:  # a writer that does not take the file lock (another tool)
                    return None
                future: Future[Any] = Future()
                outcome = self._commit(self._direct_con, [(op, future)], begun=True)
            finally:
                self._unlock_file()
        finally:
            self._commit_lock.release()
        _settle(outcome)
        return future

    def _enqueue(self, op: _Op, priority: int = 0) -> Future[Any]:
        future: Future[Any] = Future()
        if not self._writer.is_alive():
            future.set_exception(RuntimeError(f"decision log {self.path} is closed"))
            return future
        self._queue.put((priority, next(self._seq), (op, future)))
        return future

    # --- decisions ---------------------------------------------------------------------------------------
    def submit(self, decisions: Sequence[Mapping[str, Any]], background: bool = False) -> Future[None]:
        """Queue decisions for the next group commit; the future completes once they are durable.

        When nothing else is queued or being written (in this process or another), served decisions are committed
        on the calling thread at once (the future is then already complete): under load the writer thread is busy
        and they queue for its group commit.

        Args:
            decisions: The records.
            background: Records nobody waits for (shadow scores): written in small transactions, only while no
                served decision is waiting.
        """
        rows = [_row(d) for d in decisions]
        if not background:

            def insert(con: sqlite3.Connection) -> None:
                con.executemany(_INSERT, rows)

            return self._commit_here(insert) or self._enqueue(insert)
        chunks = [rows[i : i + BACKGROUND_CHUNK] for i in range(0, len(rows), BACKGROUND_CHUNK)] or [[]]
        futures = [self._enqueue(lambda con, c=chunk: con.executemany(_INSERT, c) and None, 1) for chunk in chunks]
        return futures[-1]

    def record(self, decision: Mapping[str, Any]) -> None:
        """Store one decision and wait until it is committed."""
        self.submit([decision]).result()

    def record_many(self, decisions: Iterable[Mapping[str, Any]]) -> None:
        """Store several decisions (one transaction) and wait until they are committed."""
        self.submit(list(decisions)).result()

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """A stored decision with its outputs and feedback, or None."""
        with self._read_lock:
            row = self._read_con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
            if row is None:
                return None
            feedback = self._read_con.execute(
                "SELECT outcome, value, ts FROM feedback WHERE decision_id = ? ORDER BY ts", (decision_id,)
            ).fetchall()
        out = dict(zip(_COLUMNS, row, strict=True))
        for key in ("model_versions", "context", "outputs"):
            out[key] = json.loads(out[key])
        out["shadow"] = bool(out["shadow"])
        out["feedback"] = [{"outcome": o, "value": v, "ts": t} for o, v, t in feedback]
        return out

    # --- feedback ----------------------------------------------------------------------------------------
    def add_feedback(
        self, decision_id: str, outcome: str, value: float | None, ts: float | None = None
    ) -> FeedbackReceipt:
        """Store feedback for a known decision; the first record of an outcome wins, repeats are no-ops.

        Returns:
            Whether the decision is known, and whether an earlier record of the outcome stands (with its value).
        """
        row = (decision_id, outcome, _finite(value), float(ts if ts is not None else time.time()))

        def op(con: sqlite3.Connection) -> FeedbackReceipt:
            if con.execute("SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone() is None:
                return FeedbackReceipt(known=False)
            before = con.total_changes
            con.execute("INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?)", row)
            if con.total_changes > before:
                return FeedbackReceipt(known=True, value=row[2])
            (stored,) = con.execute(
                "SELECT value FROM feedback WHERE decision_id = ? AND outcome = ?", (decision_id, outcome)
            ).fetchone()
            return FeedbackReceipt(known=True, duplicate=True, value=stored)

        return self._enqueue(op).result()

    def ingest_feedback(self, rows: Sequence[FeedbackRow]) -> IngestResult:
        """Store many feedback rows in one transaction, all or nothing; repeats of stored rows are skipped.

        Raises:
            UnknownDecisions: some rows name decision ids the log never issued (nothing is stored).
        """
        now = time.time()
        values = [(r.decision_id, r.outcome, _finite(r.value), float(r.ts if r.ts is not None else now)) for r in rows]

        def op(con: sqlite3.Connection) -> IngestResult | UnknownDecisions:
            con.execute("CREATE TEMP TABLE IF NOT EXISTS ingest_ids (pos INTEGER PRIMARY KEY, decision_id TEXT)")
            con.execute("DELETE FROM ingest_ids")
            con.executemany("INSERT INTO ingest_ids VALUES (?, ?)", ((i, v[0]) for i, v in enumerate(values)))
            unknown = con.execute(
                "SELECT pos, decision_id FROM ingest_ids i WHERE NOT EXISTS "
                "(SELECT 1 FROM decisions d WHERE d.decision_id = i.decision_id) ORDER BY pos"
            ).fetchall()
            con.execute("DELETE FROM ingest_ids")
            if unknown:
                return UnknownDecisions([u[1] for u in unknown], [u[0] for u in unknown])
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO feedback VALUES (?, ?, ?, ?)", values)
            inserted = con.total_changes - before
            return IngestResult(inserted=inserted, duplicates=len(values) - inserted)

        result = self._enqueue(op).result()
        if isinstance(result, UnknownDecisions):
            raise result
        return result

    # --- reading for the report --------------------------------------------------------------------------
    def experiment_rows(self, experiment: str) -> list[dict[str, Any]]:
        """Every decision of an experiment (shadow included) with its feedback as a list of dicts."""
        with self._read_lock:
            decisions = self._read_con.execute(
                "SELECT decision_id, ts, customer_id, variant, propensity, offer_id, shadow, pre_value "
                "FROM decisions WHERE experiment = ? ORDER BY ts",
                (experiment,),
            ).fetchall()
            feedback = self._read_con.execute(
                "SELECT f.decision_id, f.outcome, f.value, f.ts FROM feedback f JOIN decisions d "
                "ON d.decision_id = f.decision_id WHERE d.experiment = ?",
                (experiment,),
            ).fetchall()
        by_decision: dict[str, list[dict[str, Any]]] = {}
        for decision_id, outcome, value, ts in feedback:
            by_decision.setdefault(decision_id, []).append({"outcome": outcome, "value": value, "ts": ts})
        keys = ("decision_id", "ts", "customer_id", "variant", "propensity", "offer_id", "shadow", "pre_value")
        out = []
        for row in decisions:
            item = dict(zip(keys, row, strict=True))
            item["shadow"] = bool(item["shadow"])
            item["feedback"] = by_decision.get(item["decision_id"], [])
            out.append(item)
        return out

    def count(self) -> int:
        """Number of stored decisions."""
        with self._read_lock:
            return int(self._read_con.execute("SELECT count(*) FROM decisions").fetchall()[0][0])

    def close(self) -> None:
        """Commit what is queued, stop the writer thread and close the connections."""
        if self._writer.is_alive():
            self._queue.put((2, next(self._seq), _STOP))
            self._writer.join()
        self._stop.set()
        self._checkpointer.join()
        with self._read_lock:
            self._read_con.close()
        with self._commit_lock:
            self._closed = True
            self._write_con.close()
            self._direct_con.close()
            os.close(self._lock_fd)
