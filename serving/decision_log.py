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

from features.private_files import create_private_file, private_dir

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
#: Most operations waiting for the writer; beyond that a write fails at once (the service answers 503).
MAX_QUEUED = 10_000
#: How long a write waits for another connection's write lock before it fails (the service answers 503).
BUSY_TIMEOUT_MS = 5_000
#: Seconds a failed write keeps the log reported unusable (``problem``) unless a write succeeds meanwhile.
FAILURE_MEMORY_SECONDS = 5.0
#: How long a writer waits for another process's file lock (``decisions.sqlite.lock``) before the write fails
#: (the service answers 503): a process that hangs holding it must not stall every other writer for ever.
LOCK_TIMEOUT_SECONDS = 5.0
#: First and longest pause between tries for a held file lock (the kernel has no timed flock): short enough that a
#: waiter takes the lock about as soon as it is released (benchmarks/decision_log_processes.py).
LOCK_POLL_SECONDS = (0.0002, 0.002)

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
CREATE INDEX IF NOT EXISTS decisions_customer_ts ON decisions (customer_id, ts);
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
#: Ids per ``IN (...)`` query when counting contacts.
CONTACT_CHUNK = 500
#: Decisions that returned an offer: not shadow, an offer logged, and not the control arm.
CONTACT_WHERE = "shadow = 0 AND offer_id IS NOT NULL AND offer_id <> 'none'"


class DecisionLogError(ValueError):
    """The decision log file cannot be opened (not a SQLite database, unreadable, or its directory read-only)."""


class DecisionLogBusy(DecisionLogError):  # noqa: N818
    """The log's write queue is full: the write is refused rather than queued without bound."""


class DecisionLogMissing(DecisionLogError):  # noqa: N818
    """The log's file was removed or replaced under the running service."""


class DecisionLogLocked(DecisionLogError):  # noqa: N818
    """Another process held the log's write lock longer than :data:`LOCK_TIMEOUT_SECONDS`: nothing was written."""


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

    def missing_decisions(self, decision_ids: Sequence[str]) -> list[int]:
        """Positions of the ids this log does not hold."""
        ...

    def experiment_rows(self, experiment: str) -> list[dict[str, Any]]:
        """Every decision of an experiment with its feedback, for the report (shadow decisions included)."""
        ...

    def close(self) -> None:
        """Flush pending writes and release the store."""
        ...

    def forget(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """Erase customers' decisions and their feedback, leaving no copy behind; ``decisions``/``feedback`` counts."""
        ...

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything held about one customer: ``{"decisions": [...]}``, each decision with its feedback."""
        ...

    def purge(self, before_ts: float) -> dict[str, int]:
        """Erase decisions older than ``before_ts`` (epoch seconds) with their feedback (the retention period)."""
        ...

    # --- contact policy (issue 17) -------------------------------------------------------------------------
    def contacts(self, customer_ids: Sequence[str], since: float) -> dict[str, int]:
        """Offers made to each customer since ``since`` (epoch seconds), every endpoint and replica counted.

        A decision that returned an offer is a contact; shadow scores, withheld offers and the control are not.
        Customers without a contact are left out of the answer.
        """
        ...

    def decisions_since(self, since: float | None = None) -> list[dict[str, Any]]:
        """Served (non-shadow) decisions from ``since`` on, oldest first, with their outputs and feedback."""
        ...


def decision_rows(rows: Iterable[Sequence[Any]], feedback: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of :meth:`DecisionLog.decisions_since` as dicts, each with ``outputs`` parsed and its ``feedback``."""
    by_decision: dict[str, dict[str, float | None]] = {}
    for decision_id, outcome, value in feedback:
        by_decision.setdefault(decision_id, {})[outcome] = value
    keys = ("decision_id", "ts", "customer_id", "endpoint", "experiment", "variant", "offer_id", "pre_value")
    out = []
    for row in rows:
        item = dict(zip(keys, row[:-1], strict=True))
        item["outputs"] = json.loads(row[-1])
        item["feedback"] = by_decision.get(item["decision_id"], {})
        out.append(item)
    return out


#: One customer's decisions and their feedback, for ``export`` (``%s`` placeholders; SQLite takes ``?``).
EXPORT_DECISIONS = f"SELECT {', '.join(_COLUMNS)} FROM decisions WHERE customer_id = %s ORDER BY ts"
EXPORT_FEEDBACK = (
    "SELECT f.decision_id, f.outcome, f.value, f.ts FROM feedback f JOIN decisions d "
    "ON d.decision_id = f.decision_id WHERE d.customer_id = %s ORDER BY f.ts"
)


def exported_decisions(rows: Iterable[Sequence[Any]], feedback: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of :data:`EXPORT_DECISIONS` as dicts: JSON columns parsed, each with its ``feedback`` (oldest first)."""
    by_decision: dict[str, list[dict[str, Any]]] = {}
    for decision_id, outcome, value, ts in feedback:
        by_decision.setdefault(decision_id, []).append({"outcome": outcome, "value": value, "ts": ts})
    out = []
    for row in rows:
        item = dict(zip(_COLUMNS, row, strict=True))
        for key in ("model_versions", "context", "outputs"):
            item[key] = json.loads(item[key])
        item["shadow"] = bool(item["shadow"])
        item["feedback"] = by_decision.get(item["decision_id"], [])
        out.append(item)
    return out


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
            private_dir(self.path.parent)
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            create_private_file(self.path)  # SQLite keeps the mode (and gives it to its -wal and -shm files)
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
        self._inode = os.stat(self.path).st_ino
        #: When the last write failed and why (cleared by a write that succeeds).
        self._failed: tuple[float, str] | None = None
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

    def problem(self) -> str | None:
        """Why the log cannot be written right now, or None.

        Its file gone or replaced, its queue full, or a write that failed in the last few seconds.
        """
        try:
            if os.stat(self.path).st_ino != self._inode:
                return f"{self.path} was replaced under the service (restart it to use the new file)"
        except OSError:
            return f"{self.path} is missing (put it back, or restart to start a new log)"
        if self._queue.qsize() >= MAX_QUEUED:
            return f"{MAX_QUEUED} writes are queued"
        failed = self._failed
        if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY_SECONDS:
            return f"the last write failed: {failed[1]}"
        return None

    def _check_file(self) -> None:
        """Refuse to write into a file that is no longer the log (removed or replaced): the write would be lost."""
        try:
            same = os.stat(self.path).st_ino == self._inode
        except OSError:
            same = False
        if not same:
            raise DecisionLogMissing(f"decision log {self.path} was removed or replaced; nothing was written")

    def _connect(
        self, opened: list[sqlite3.Connection] | None = None, busy_timeout_ms: int = BUSY_TIMEOUT_MS
    ) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_ms / 1000)
        if opened is not None:
            opened.append(con)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # A checkpoint stalls the commit that runs it, so a separate thread runs them and no request waits on one.
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("PRAGMA secure_delete=ON")  # forgotten and expired rows leave no bytes in free space
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
            except Exception as exc:  # the file lock failed or timed out: fail this group, keep writing
                self.write_errors += 1
                self._failed = (time.monotonic(), f"{type(exc).__name__}: {exc}")
                log.error("decision log %s: cannot write (%d operations): %r", self.path, len(group), exc)
                outcome = [(future, None, exc) for _, future in group]
            # Woken only once both locks are free, so a caller's next lone decision can take the direct path.
            _settle(outcome)

    def _lock_file(self, wait: bool = True) -> bool:
        """Take the cross-process write lock; False if ``wait`` is off and another process holds it.

        Raises:
            DecisionLogLocked: ``wait`` is on and the lock stayed held for :data:`LOCK_TIMEOUT_SECONDS`.
        """
        if fcntl is None:
            return True
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not wait:
                return False
        except OSError:  # failing (ENOLCK on some network disks): the writer thread reports it to the caller
            if not wait:
                return False
            raise
        # Polled with short, growing pauses up to a deadline: a blocking flock has no timeout, and SQLite's own busy
        # handler sleeps up to 100 ms between tries (benchmarks/decision_log_processes.py measures both).
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        pause, longest = LOCK_POLL_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DecisionLogLocked(
                    f"decision log {self.path}: another process has held its write lock for {LOCK_TIMEOUT_SECONDS:g} s "
                    "(a stuck `cxpredict` command?); nothing was written"
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, longest)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue

    def _unlock_file(self) -> None:
        if fcntl is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _commit(
        self, con: sqlite3.Connection, group: list[tuple[_Op, Future[Any]]], begun: bool = False
    ) -> list[_Outcome]:
        """Run ``group`` in one transaction; return each future's outcome, to be settled after the locks are freed."""
        results: list[_Outcome] = []
        try:
            self._check_file()
            if not begun:
                con.execute("BEGIN IMMEDIATE")
            if len(group) == 1:  # alone, its failure is the transaction's: no savepoint round trips needed
                op, future = group[0]
                try:
                    results.append((future, op(con), None))
                except sqlite3.Error as exc:
                    con.execute("ROLLBACK")
                    self._failed = None  # the operation failed, not the log
                    return [(future, None, exc)]
            for i, (op, future) in enumerate(group if len(group) > 1 else ()):
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
            self._failed = None
        except BaseException as exc:
            self.write_errors += 1
            self._failed = (time.monotonic(), f"{type(exc).__name__}: {exc}")
            log.error("decision log commit failed (%d operations): %r", len(group), exc)
            if con.in_transaction:
                con.execute("ROLLBACK")
            return [(future, None, exc) for _, future in group]
        return results

    def _commit_here(self, op: _Op) -> Future[Any] | None:
        """Commit ``op`` on the calling thread if no other write is queued or running; None if it must queue."""
        # A lone request saves the two thread wake-ups of the hand-off (benchmarks/serving.py, 1 connection). Not
        # under load: there a scoring thread committing its own batches was slower than the writer's group commits.
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
        if self._queue.qsize() >= MAX_QUEUED:
            future.set_exception(DecisionLogBusy(f"decision log {self.path}: {MAX_QUEUED} writes already queued"))
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

    def missing_decisions(self, decision_ids: Sequence[str]) -> list[int]:
        """Positions of the ids this log does not hold (a read: it never waits for or blocks a writer)."""
        distinct = list(dict.fromkeys(decision_ids))
        held: set[str] = set()
        with self._read_lock:
            for i in range(0, len(distinct), 500):
                chunk = distinct[i : i + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT decision_id FROM decisions WHERE decision_id IN ({marks})"
                held.update(r[0] for r in self._read_con.execute(sql, chunk))
        return [i for i, d in enumerate(decision_ids) if d not in held]

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

    # --- privacy: forget, export, retention ----------------------------------------------------------------
    def forget(self, customer_ids: Iterable[str]) -> dict[str, int]:
        """Erase customers' decisions and the feedback sent against them; counts of rows erased.

        Rows are overwritten in place (``secure_delete``) and the WAL is checkpointed and truncated, so the file
        keeps no copy of them.
        """
        ids = list(dict.fromkeys(str(c) for c in customer_ids))

        def op(con: sqlite3.Connection) -> dict[str, int]:
            con.execute("CREATE TEMP TABLE IF NOT EXISTS forget_ids (customer_id TEXT PRIMARY KEY)")
            con.execute("DELETE FROM forget_ids")
            con.executemany("INSERT OR IGNORE INTO forget_ids VALUES (?)", ((i,) for i in ids))
            feedback = con.execute(
                "DELETE FROM feedback WHERE decision_id IN (SELECT decision_id FROM decisions "
                "WHERE customer_id IN (SELECT customer_id FROM forget_ids))"
            ).rowcount
            decisions = con.execute(
                "DELETE FROM decisions WHERE customer_id IN (SELECT customer_id FROM forget_ids)"
            ).rowcount
            con.execute("DELETE FROM forget_ids")
            return {"decisions": decisions, "feedback": feedback}

        if not ids:
            return {"decisions": 0, "feedback": 0}
        counts = self._enqueue(op).result()
        # Always, so that running forget again empties a WAL that busy readers kept the first time.
        if not self.truncate_wal():
            counts["wal_not_truncated"] = 1
        return counts

    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything the log holds about one customer: their decisions, each with its feedback."""
        with self._read_lock:
            rows = self._read_con.execute(EXPORT_DECISIONS.replace("%s", "?"), (customer_id,)).fetchall()
            feedback = self._read_con.execute(EXPORT_FEEDBACK.replace("%s", "?"), (customer_id,)).fetchall()
        return {"decisions": exported_decisions(rows, feedback)}

    def purge(self, before_ts: float) -> dict[str, int]:
        """Erase decisions made before ``before_ts`` (epoch seconds) with their feedback, and older feedback."""

        def op(con: sqlite3.Connection) -> dict[str, int]:
            feedback = con.execute(
                "DELETE FROM feedback WHERE ts < ? OR decision_id IN (SELECT decision_id FROM decisions WHERE ts < ?)",
                (before_ts, before_ts),
            ).rowcount
            decisions = con.execute("DELETE FROM decisions WHERE ts < ?", (before_ts,)).rowcount
            return {"decisions": decisions, "feedback": feedback}

        counts = self._enqueue(op).result()
        if counts["decisions"] or counts["feedback"]:
            self.truncate_wal(wait_seconds=0.0)
        return counts

    def truncate_wal(self, wait_seconds: float = 5.0) -> bool:
        """Copy the WAL into the database and empty it (it still holds erased rows); False if readers kept it."""
        deadline = time.monotonic() + wait_seconds
        con = self._connect(busy_timeout_ms=200)
        try:
            while True:
                busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return True
                if time.monotonic() >= deadline:
                    log.warning("decision log %s: WAL not truncated (readers busy)", self.path)
                    return False
                time.sleep(0.05)
        finally:
            con.close()

    # --- contact policy (issue 17) -------------------------------------------------------------------------
    def contacts(self, customer_ids: Sequence[str], since: float) -> dict[str, int]:
        """Offers made to each customer since ``since`` by any process writing this file (see the protocol)."""
        ids = list(dict.fromkeys(customer_ids))
        out: dict[str, int] = {}
        with self._read_lock:
            for i in range(0, len(ids), CONTACT_CHUNK):
                chunk = ids[i : i + CONTACT_CHUNK]
                rows = self._read_con.execute(
                    f"SELECT customer_id, count(*) FROM decisions WHERE customer_id IN ({', '.join('?' * len(chunk))}) "
                    f"AND ts >= ? AND {CONTACT_WHERE} GROUP BY customer_id",
                    (*chunk, float(since)),
                ).fetchall()
                out.update({c: int(n) for c, n in rows})
        return out

    def decisions_since(self, since: float | None = None) -> list[dict[str, Any]]:
        """Served decisions from ``since`` on (all when None), oldest first, with outputs and feedback."""
        with self._read_lock:
            rows = self._read_con.execute(
                "SELECT decision_id, ts, customer_id, endpoint, experiment, variant, offer_id, pre_value, outputs "
                "FROM decisions WHERE shadow = 0 AND ts >= ? ORDER BY ts",
                (float(since) if since is not None else float("-inf"),),
            ).fetchall()
            feedback = self._read_con.execute(
                "SELECT f.decision_id, f.outcome, f.value FROM feedback f JOIN decisions d "
                "ON d.decision_id = f.decision_id WHERE d.shadow = 0 AND d.ts >= ?",
                (float(since) if since is not None else float("-inf"),),
            ).fetchall()
        return decision_rows(rows, feedback)
