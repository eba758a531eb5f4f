"""The PostgreSQL decision log against a real server on 127.0.0.1:5432 (skipped with a reason when unreachable)."""

from __future__ import annotations

import multiprocessing

import pytest

psycopg = pytest.importorskip("psycopg")

from features.settings import load_settings  # noqa: E402
from serving import decision_log_pg  # noqa: E402
from serving.decision_log import (  # noqa: E402
    DecisionLogError,
    FeedbackRow,
    UnknownDecisions,
    new_decision_id,
)
from serving.decision_log_factory import open_decision_log  # noqa: E402
from serving.decision_log_pg import MIGRATION_LOCK, PostgresDecisionLog  # noqa: E402
from tests.serving.logged import count, read_decision, record  # noqa: E402


@pytest.fixture
def url(pg_url: str) -> str:
    return pg_url


def _decision(customer: str, experiment: str = "e1", variant: str = "champion") -> dict:
    return {
        "decision_id": new_decision_id(),
        "customer_id": customer,
        "experiment": {"name": experiment, "variant": variant},
        "model_versions": {"churn": 1},
        "context": {"channel": "email"},
        "churn": {"probability": 0.3},
    }


def test_factory_picks_postgres(tmp_path, url):
    log = open_decision_log(load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_DECISION_LOG": url}))
    try:
        assert isinstance(log, PostgresDecisionLog)
    finally:
        log.close()
    with pytest.raises(ValueError, match="postgresql://"):
        open_decision_log(load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_DECISION_LOG": "mysql://x"}))


def test_two_replicas_share_one_log(url):
    one, two = PostgresDecisionLog(url), PostgresDecisionLog(url)
    try:
        a, b = _decision("c1"), _decision("c2", variant="challenger")
        one.submit([a]).result(timeout=10)
        two.submit([b]).result(timeout=10)
        assert read_decision(two, a["decision_id"])["outputs"]["churn"] == {"probability": 0.3}
        # Feedback for the other replica's decision is accepted; the first record wins.
        assert two.add_feedback(a["decision_id"], "converted", 10.0).known
        repeat = one.add_feedback(a["decision_id"], "converted", 99.0)
        assert repeat.known and repeat.duplicate and repeat.value == 10.0
        assert not one.add_feedback("nope", "converted", 1.0).known
        with pytest.raises(UnknownDecisions):
            one.ingest_feedback([FeedbackRow(b["decision_id"], "clicked"), FeedbackRow("nope", "clicked")])
        assert read_decision(one, b["decision_id"])["feedback"] == []
        result = one.ingest_feedback(
            [FeedbackRow(b["decision_id"], "clicked"), FeedbackRow(a["decision_id"], "converted")]
        )
        assert (result.inserted, result.duplicates) == (1, 1)
        rows = {r["customer_id"]: r for r in one.experiment_rows("e1")}
        assert rows["c1"]["feedback"][0]["value"] == 10.0 and rows["c2"]["variant"] == "challenger"
        assert count(one) == count(two) == 2
    finally:
        one.close()
        two.close()


def _open_and_write(url: str, n: int) -> int:
    log = PostgresDecisionLog(url)
    try:
        record(log, *(_decision(f"c{i}") for i in range(n)))
        return count(log)
    finally:
        log.close()


def test_replicas_migrating_at_once(url):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        counts = pool.starmap(_open_and_write, [(url, 50)] * 4)
    assert max(counts) == 200
    log = PostgresDecisionLog(url)
    try:
        assert count(log) == 200
    finally:
        log.close()


def test_missing_decisions(url):
    log = PostgresDecisionLog(url)
    try:
        known = _decision("c1")
        record(log, known)
        assert log.missing_decisions(["nope", known["decision_id"], "nope", "other"]) == [0, 2, 3]
        assert log.problem() is None
    finally:
        log.close()


def test_a_lock_another_session_holds_fails_the_write_in_bounded_time(url, monkeypatch):
    """Another session (a replica, `ab ingest`, a stuck psql) keeps a row or the migration lock: no wait for ever."""
    monkeypatch.setattr(decision_log_pg, "LOCK_TIMEOUT_MS", 300)
    log = PostgresDecisionLog(url)
    other = psycopg.connect(url)  # a transaction is open from its first statement until commit or rollback
    try:
        a = _decision("c1")
        record(log, a)
        other.execute("INSERT INTO feedback VALUES (%s, 'converted', 1.0, 0.0)", (a["decision_id"],))
        with pytest.raises(psycopg.errors.LockNotAvailable):
            log.add_feedback(a["decision_id"], "converted", 2.0)  # waits for the other session's row
        b = _decision("c2")
        record(log, b)  # the writer goes on
        other.rollback()
        assert log.add_feedback(a["decision_id"], "converted", 2.0).known
        assert read_decision(log, a["decision_id"])["feedback"][0]["value"] == 2.0
        other.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))  # a replica stuck in its migration
        with pytest.raises(DecisionLogError, match="cannot be opened"):
            PostgresDecisionLog(url)
        other.rollback()
        PostgresDecisionLog(url).close()
    finally:
        other.close()
        log.close()
