"""The decision log: group commit, feedback (single and bulk), schema upgrade, and the feedback file reader."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from features.settings import load_settings
from serving import ab, decision_log
from serving.decision_log import (
    DecisionLogError,
    DecisionLogLocked,
    FeedbackRow,
    SQLiteDecisionLog,
    UnknownDecisions,
    new_decision_id,
)
from tests.serving.faults import lock_held_elsewhere
from tests.serving.logged import count, read_decision, record


def decision(i: int, **extra) -> dict:
    return {"decision_id": f"d{i}", "customer_id": f"c{i % 7}", "model_versions": {"churn": 1}, **extra}


def test_concurrent_submissions_are_all_committed_in_groups(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    futures = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for j in range(250):
            f = log.submit([decision(k * 1000 + j, experiment={"name": "e", "variant": "a"}, propensity=0.5)])
            with lock:
                futures.append(f)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in futures:
        f.result(timeout=30)
    assert count(log) == 2000
    # Group commit: far fewer transactions than decisions.
    assert log.commits < 2000
    row = read_decision(log, "d1005")
    assert row["variant"] == "a" and row["propensity"] == 0.5 and row["shadow"] is False
    log.close()
    # Another process (a fresh connection) sees everything that was acknowledged.
    with sqlite3.connect(tmp_path / "d.sqlite") as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchall()[0][0] == 2000


def test_feedback_is_idempotent_and_bulk_ingest_all_or_nothing(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    record(log, *[decision(i) for i in range(5)])
    assert log.add_feedback("d0", "converted", 10.0).known
    assert log.add_feedback("d0", "converted", 99.0).known  # a repeat is accepted and changes nothing
    assert not log.add_feedback("nope", "converted", 1.0).known
    with pytest.raises(UnknownDecisions, match=r"row 1: 'x1'") as err:
        log.ingest_feedback([FeedbackRow("d1", "converted", 5.0), FeedbackRow("x1", "converted", 1.0)])
    assert err.value.ids == ["x1"]
    assert read_decision(log, "d1")["feedback"] == []  # nothing from the failed batch was stored
    result = log.ingest_feedback(
        [FeedbackRow("d0", "converted", 1.0), FeedbackRow("d1", "converted", 5.0, ts=1_700_000_000.0)]
    )
    assert (result.inserted, result.duplicates) == (1, 1)
    assert read_decision(log, "d0")["feedback"][0]["value"] == 10.0
    assert read_decision(log, "d1")["feedback"] == [{"outcome": "converted", "value": 5.0, "ts": 1_700_000_000.0}]
    log.close()


def test_add_feedback_says_when_an_earlier_record_stands(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    record(log, decision(0))
    first = log.add_feedback("d0", "converted", 10.0)
    assert first.known and not first.duplicate and first.value == 10.0
    again = log.add_feedback("d0", "converted", 99.0)
    assert (again.known, again.duplicate, again.value) == (True, True, 10.0)
    assert not log.add_feedback("d0", "clicked", None).duplicate
    unknown = log.add_feedback("nope", "converted", 1.0)
    assert not unknown.known and not unknown.duplicate
    assert [f["value"] for f in read_decision(log, "d0")["feedback"] if f["outcome"] == "converted"] == [10.0]
    log.close()


def test_old_database_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    with sqlite3.connect(path) as con:
        con.execute(
            "CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, ts REAL NOT NULL, customer_id TEXT NOT NULL, "
            "endpoint TEXT NOT NULL, experiment TEXT, variant TEXT, model_versions TEXT NOT NULL, "
            "context TEXT NOT NULL, outputs TEXT NOT NULL) WITHOUT ROWID"
        )
        con.execute("INSERT INTO decisions VALUES ('old', 1.0, 'c', 'personalize', NULL, NULL, '{}', '{}', '{}')")
    log = SQLiteDecisionLog(path)
    record(log, decision(1, offer_id="discount10", pre_value=12.5))
    assert read_decision(log, "old")["offer_id"] is None
    assert read_decision(log, "d1")["offer_id"] == "discount10" and read_decision(log, "d1")["pre_value"] == 12.5
    log.close()


def test_a_log_that_cannot_be_opened_names_its_file_and_leaves_nothing_open(tmp_path: Path) -> None:
    bad = tmp_path / "d.sqlite"
    bad.write_bytes(b"not a database " * 100)
    fd_dir = Path("/proc/self/fd")  # Linux; elsewhere the descriptor count is not checked
    fds = set(os.listdir(fd_dir)) if fd_dir.is_dir() else set()
    for _ in range(3):
        with pytest.raises(DecisionLogError, match=r"d\.sqlite cannot be opened: file is not a database"):
            SQLiteDecisionLog(bad)
    if fd_dir.is_dir():
        assert set(os.listdir(fd_dir)) <= fds  # no connection nor lock descriptor left behind
    assert bad.read_bytes() == b"not a database " * 100  # and the file is untouched
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(DecisionLogError, match="cannot create its lock file"):
        SQLiteDecisionLog(blocked / "d.sqlite")  # its directory would be a file


def test_a_failing_write_lock_fails_its_callers_and_the_writer_goes_on(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    take = log._lock_file
    failures = iter([OSError(37, "No locks available")])

    def flaky_lock(wait: bool = True) -> bool:
        if not wait:  # the submitting thread's try (its real version turns an OSError into False): leave it queued
            return False
        if (error := next(failures, None)) is not None:
            raise error
        return take(wait)

    log._lock_file = flaky_lock  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No locks available"):
        log.submit([decision(0)]).result(timeout=30)
    log.submit([decision(1)]).result(timeout=30)  # the writer thread survived
    assert log.write_errors == 1 and read_decision(log, "d1") is not None and read_decision(log, "d0") is None
    log.close()


def test_a_caller_that_stops_waiting_does_not_stop_the_writer(tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    # Another process holds the write lock long enough for a request to time out and cancel its wait.
    other = os.open(tmp_path / "d.sqlite.lock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        waited = log.submit([decision(0)])
        assert waited.cancel()
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    log.submit([decision(1)]).result(timeout=30)  # the writer thread survived settling a cancelled future
    # The cancelled one was still written.
    assert read_decision(log, "d0") is not None and read_decision(log, "d1") is not None
    log.close()


def test_closed_log_refuses_writes(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        record(log, decision(1))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("decision_id,value\nd1,3\n", r"missing column\(s\) \['outcome'\]"),
        ("decision_id,outcome,value\nd1,converted,abc\n", r"'value' is not a finite number .* in row\(s\) \[1\]"),
        ("decision_id,outcome,ts\nd1,converted,yesterday-ish\n", r"'ts' is not a timestamp in row\(s\) \[1\]"),
        ("decision_id,outcome\nd1,converted\n,converted\n", r"'decision_id' is empty in row\(s\) \[2\]"),
        ("decision_id,outcome,colour\nd1,converted,red\n", "unexpected column"),
        ("decision_id,outcome\n", "no rows"),
        ("decision_id,outcome,value\nd1,converted,1.7e308\n", r"'value' is not a finite number between -1e\+12"),
        ("decision_id,outcome,value\nd1,converted,5\nd2,converted,-2e12\n", r"1e\+12 in row\(s\) \[2\]"),
        ("decision_id,outcome,value\nd1,converted,inf\n", r"'value' is not a finite number .* row\(s\) \[1\]"),
    ],
)
def test_feedback_file_errors_name_file_column_and_row(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "fb.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        ab.read_feedback_file(path)
    assert "fb.csv" in str(err.value)


def test_ingest_reads_csv_and_parquet_and_refuses_unknown_ids(tmp_path: Path) -> None:
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path / "home")})
    log = ab.decision_log(settings)
    record(log, *[decision(i) for i in range(3)])
    log.close()
    csv = tmp_path / "fb.csv"
    csv.write_text(
        "decision_id,outcome,value,ts\nd0,converted,12.5,2026-01-02T03:04:05Z\nd0,converted,1,\nd1,clicked,,\n"
    )
    assert ab.ingest(settings, csv) == ab.IngestResult(inserted=2, duplicates=0)
    pq = tmp_path / "fb.parquet"
    pd.DataFrame({"decision_id": ["d2", "d0"], "outcome": ["converted", "converted"], "value": [3.0, 4.0]}).to_parquet(
        pq
    )
    assert ab.ingest(settings, pq) == ab.IngestResult(inserted=1, duplicates=1)
    bad = tmp_path / "bad.csv"
    bad.write_text("decision_id,outcome\nd1,converted\nghost,converted\n")
    with pytest.raises(ValueError, match=r"bad.csv: 1 row\(s\) name decision ids .*'ghost'.*nothing was stored"):
        ab.ingest(settings, bad)
    log = ab.decision_log(settings)
    assert [f["outcome"] for f in read_decision(log, "d1")["feedback"]] == ["clicked"]
    assert read_decision(log, "d0")["feedback"][0]["ts"] == pd.Timestamp("2026-01-02T03:04:05Z").timestamp()
    log.close()


def _write_from_another_process(path: str, start: int, n: int) -> None:
    log = SQLiteDecisionLog(Path(path))
    futures = [log.submit([decision(start + i)]) for i in range(n)]
    for f in futures:
        f.result(timeout=60)
    log.close()


@pytest.mark.parametrize("created_first", [True, False], ids=["created-first", "fresh-file"])
def test_several_processes_write_the_same_log(tmp_path: Path, created_first: bool) -> None:
    """Like `cxpredict serve --workers N`: every worker process has its own writer on the one WAL file.

    The service's probe creates the file before the workers start; processes may also open a fresh file together.
    """
    import multiprocessing

    path = tmp_path / "d.sqlite"
    if created_first:
        SQLiteDecisionLog(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_from_another_process, args=(str(path), k * 10_000, 400)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    log = SQLiteDecisionLog(path)
    assert count(log) == 1200
    log.close()


def test_served_decisions_jump_the_queue_of_background_records(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    order: list[str] = []
    background = log.submit([decision(i, shadow=True) for i in range(2000)], background=True)
    background.add_done_callback(lambda _: order.append("background"))
    served = log.submit([decision(99_999)])
    served.add_done_callback(lambda _: order.append("served"))
    served.result(timeout=30)
    background.result(timeout=60)
    assert order == ["served", "background"]
    assert count(log) == 2001
    log.close()


def test_decision_ids_are_unique_unguessable_and_grow_with_time() -> None:
    ids = [new_decision_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # The time part (first 14 hex digits) never goes back, so new rows are appended to the log's B-tree.
    prefixes = [i[:14] for i in ids]
    assert prefixes == sorted(prefixes)
    # The random part differs even between ids made in the same microsecond.
    assert len({i[14:] for i in ids}) == len(ids)


def test_a_direct_decision_on_an_idle_log_is_committed_by_the_submitting_thread(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    # The writer thread used to wake its caller before freeing its locks, so the caller's next direct decision
    # found them held and queued whenever the writer was descheduled in between (a CI failure under load). A slow
    # unlock holds that window open: a waiter woken before the locks are free fails this every time.
    unlock = log._unlock_file

    def slow_unlock() -> None:
        unlock()
        time.sleep(0.005)

    log._unlock_file = slow_unlock  # type: ignore[method-assign]
    for i in range(0, 20, 2):
        log.submit([decision(i)], background=True).result(timeout=30)  # through the writer thread
        future = log.submit([decision(i + 1)])
        assert future.done() and future.result() is None, i  # no hand-off: durable before submit returned
    with sqlite3.connect(tmp_path / "d.sqlite") as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchone() == (20,)
    log.close()
    # Closed: refused with an error, never silently dropped.
    assert isinstance(log.submit([decision(2)]).exception(timeout=5), RuntimeError)


def test_submit_never_waits_for_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    log = SQLiteDecisionLog(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # like another worker (or `ab ingest`) in the middle of its transaction
    submitted: list = []
    thread = threading.Thread(target=lambda: submitted.append(log.submit([decision(1)])))
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "submit blocked on another process's write lock"
    assert not submitted[0].done()  # queued for the writer thread, which does wait for the lock
    other.execute("COMMIT")
    submitted[0].result(timeout=30)
    assert count(log) == 1
    other.close()
    log.close()


def test_writers_of_other_processes_take_turns_on_the_file_lock(tmp_path: Path) -> None:
    """A second log object opens the lock file anew, so it stands for another worker process."""
    path = tmp_path / "d.sqlite"
    log, other = SQLiteDecisionLog(path), SQLiteDecisionLog(path)
    assert other._lock_file(wait=False)  # another worker in the middle of its transaction
    direct = log.submit([decision(1)])
    queued = log.submit([decision(2)])
    assert not direct.done() and not queued.done()  # neither the caller nor the writer thread got past the lock
    with pytest.raises(TimeoutError):
        queued.result(timeout=0.3)
    other._unlock_file()
    direct.result(timeout=30)
    queued.result(timeout=30)
    assert count(log) == 2
    other.close()
    log.close()


def test_any_json_a_caller_sends_as_context_is_logged(tmp_path: Path) -> None:
    """Integers beyond 64 bits, non-finite outputs: written as valid JSON or as the standard library writes them."""
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    huge = 10**30
    record(log, decision(1, context={"campaign": huge, "tags": ["a", 1.5]}, cltv={"value": float("nan")}))
    record(log, decision(2, context={"channel": "email"}))
    assert read_decision(log, "d1")["context"] == {"campaign": huge, "tags": ["a", 1.5]}
    assert read_decision(log, "d1")["outputs"]["cltv"] == {"value": None}
    d2 = read_decision(log, "d2")
    assert d2["context"] == {"channel": "email"} and d2["model_versions"] == {"churn": 1}
    log.close()


def test_ingest_writes_in_chunks_and_stays_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path / "home")})
    log = ab.decision_log(settings)
    record(log, *[decision(i) for i in range(7)])
    log.close()
    monkeypatch.setattr(ab, "INGEST_CHUNK", 3)
    transactions: list[int] = []
    real = SQLiteDecisionLog.ingest_feedback

    def counted(self: SQLiteDecisionLog, rows: list) -> object:
        transactions.append(len(rows))
        return real(self, rows)

    monkeypatch.setattr(SQLiteDecisionLog, "ingest_feedback", counted)
    bad = tmp_path / "bad.csv"
    bad.write_text("decision_id,outcome\n" + "".join(f"d{i},converted\n" for i in range(6)) + "ghost,converted\n")
    with pytest.raises(ValueError, match=r"1 row\(s\) name decision ids .*'ghost'.*nothing was stored"):
        ab.ingest(settings, bad)
    assert transactions == []  # the unknown id in the last chunk stopped it before any write
    good = tmp_path / "good.csv"
    good.write_text("decision_id,outcome\n" + "".join(f"d{i},converted\n" for i in range(7)))
    assert ab.ingest(settings, good) == ab.IngestResult(inserted=7, duplicates=0)
    assert transactions == [3, 3, 1]  # three short transactions, not one holding the lock for the whole file


def test_a_write_lock_held_too_long_by_another_process_fails_the_write_and_the_log_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decision_log, "LOCK_TIMEOUT_SECONDS", 0.5)
    path = tmp_path / "d.sqlite"
    log = SQLiteDecisionLog(path)
    record(log, decision(0))
    with lock_held_elsewhere(tmp_path / "d.sqlite.lock"):
        with pytest.raises(DecisionLogLocked, match=r"d\.sqlite: another process has held its write lock"):
            log.submit([decision(1)]).result(timeout=30)
        with pytest.raises(DecisionLogLocked):  # feedback waits no longer than decisions
            log.add_feedback("d0", "converted", 1.0)
        assert "write lock" in (log.problem() or "")  # /readyz says not ready meanwhile
        with pytest.raises(DecisionLogError, match="write lock"):  # a worker starting now does not hang either
            SQLiteDecisionLog(path)
    record(log, decision(2))
    assert log.problem() is None
    assert read_decision(log, "d1") is None and read_decision(log, "d2") is not None
    assert read_decision(log, "d0")["feedback"] == []
    log.close()


def test_a_failing_write_fails_only_its_caller_alone_or_in_a_group(tmp_path: Path) -> None:
    """An operation that SQLite refuses fails its own caller, committed alone or with others; the log goes on."""
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")

    def bad(con: sqlite3.Connection) -> None:
        con.execute("INSERT INTO no_such_table VALUES (1)")

    alone = log._commit_here(bad)  # the direct path: one operation, one transaction
    assert alone is not None
    with pytest.raises(sqlite3.OperationalError):
        alone.result(timeout=10)
    assert log.problem() is None  # the operation failed, not the log
    # In a group: the writer thread commits the queued operations together; only the bad one fails.
    with log._commit_lock:  # hold the direct path off so that the writes queue for one group commit
        futures = [log.submit([decision(1)]), log._enqueue(bad), log.submit([decision(2)])]
    assert futures[0].result(timeout=10) is None and futures[2].result(timeout=10) is None
    with pytest.raises(sqlite3.OperationalError):
        futures[1].result(timeout=10)
    log.submit([decision(3)]).result(timeout=10)
    assert count(log) == 3 and log.problem() is None
    log.close()
