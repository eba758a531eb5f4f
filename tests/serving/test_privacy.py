"""Privacy: `forget` leaves no trace in any store, `export`, retention, the context allowlist, owner-only files.

`forget` runs against both backend pairs: embedded SQLite store + SQLite log, and Redis + PostgreSQL on 127.0.0.1
(each test its own Redis db number and PostgreSQL database; skipped with a reason when unreachable).
"""

from __future__ import annotations

import json
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxpredict.cli import app
from features.definitions import feature_set_version
from features.settings import Settings, load_settings
from features.stores.factory import write_online_store
from serving import privacy
from serving.decision_log import SQLiteDecisionLog, new_decision_id
from serving.runtime import Runtime, UnknownCustomer
from tests.serving.conftest import AS_OF, build_bundles, feature_frame, write_manifest
from tests.serving.logged import count, read_decision, record

#: An id that cannot turn up by chance in random bytes or other ids.
GONE = "zq-forget-me-7731"
KEPT = "zq-keep-me-4410"
REDIS_DB = 13
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_bundles(tmp_path_factory.mktemp("bundles"))


def _home(home: Path, bundles: dict[str, Path], env: dict[str, str]) -> Settings:
    write_manifest(home, bundles, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    settings = load_settings({"CXPREDICT_HOME": str(home), "CXPREDICT_API_KEYS": "k1", **env})
    frame = feature_frame(6, seed=3)
    frame.insert(0, "customer_id", [GONE, KEPT, "c2", "c3", "c4", "c5"])
    write_online_store(settings, frame, AS_OF, feature_set_version())
    return settings


def _traffic(runtime: Runtime) -> dict[str, str]:
    """Two decisions for GONE (one with feedback), one for KEPT; a context key outside the allowlist is sent."""
    ids = {}
    for customer in (GONE, GONE, KEPT):
        answer = runtime.personalize(customer, {"channel": "email", "email": f"{customer}@example.com"})
        ids.setdefault(customer, answer["decision_id"])
    assert runtime.feedback(ids[GONE], "converted", 12.5).known
    assert runtime.feedback(ids[KEPT], "converted", 3.0).known
    return ids


def _plant_reports(home: Path) -> None:
    reports = home / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "campaign.html").write_text(f"<html><td>{GONE}</td></html>")
    (reports / "other.html").write_text(f"<html><td>{KEPT}</td><td>zq-forget-me-773</td></html>")


def _files_holding(home: Path, needle: str) -> list[str]:
    return [str(p) for p in home.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def _check_forget(settings: Settings, bundles: dict[str, Path]) -> None:
    home = Path(settings.home)
    runtime = Runtime(settings)
    try:
        ids = _traffic(runtime)
        _plant_reports(home)
        exported = privacy.export(settings, GONE)
        assert exported["online_store"]["features"] is not None
        assert [d["decision_id"] for d in exported["decision_log"]["decisions"]][0] == ids[GONE]
        assert len(exported["decision_log"]["decisions"]) == 2
        assert exported["decision_log"]["decisions"][0]["feedback"][0]["value"] == 12.5
        # The context key outside the allowlist was never logged.
        assert all(d["context"] == {"channel": "email"} for d in exported["decision_log"]["decisions"])
        assert exported["reports"] == [str(home / "reports" / "campaign.html")]

        report = privacy.forget(settings, [GONE, "never-seen"])
        assert (report.online_store, report.decisions, report.feedback) == (1, 2, 1)
        assert report.reports_deleted == [home / "reports" / "campaign.html"]
        assert (home / "reports" / "other.html").exists()

        # The running service's next lookup misses: it keeps no per-customer cache.
        with pytest.raises(UnknownCustomer):
            runtime.prepare(GONE)
        assert runtime.prepare(KEPT).customer_id == KEPT
        assert read_decision(runtime.decisions, ids[KEPT])["feedback"][0]["value"] == 3.0
        after = privacy.export(settings, GONE)
        assert after["online_store"]["features"] is None and after["decision_log"]["decisions"] == []
        # Forgetting again erases nothing and says so.
        again = privacy.forget(settings, [GONE])
        assert (again.online_store, again.decisions, again.feedback) == (0, 0, 0)
        # Searched while the service still holds the log open (its WAL in use), and again once it closed.
        assert _files_holding(home, GONE) == []
        assert _files_holding(home, KEPT)  # the grep does find what is still there
    finally:
        runtime.decisions.close()
    assert _files_holding(home, GONE) == []


def test_forget_sqlite_leaves_no_byte_behind(tmp_path: Path, bundles: dict[str, Path]) -> None:
    settings = _home(tmp_path, bundles, {})
    _check_forget(settings, bundles)
    # Both SQLite files were searched, WAL included.
    assert (tmp_path / "online" / "features.sqlite").exists() and (tmp_path / "decisions.sqlite").exists()


@pytest.fixture
def redis_url() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (start it: see README, Scale-out)")
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{REDIS_DB}"
    client.flushdb()
    client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres (see README, Scale-out)")
    name = f"cxp_privacy_{secrets.token_hex(4)}"
    admin.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def _redis_dump(url: str) -> bytes:
    import redis

    client = redis.Redis.from_url(url)
    out = []
    for key in client.scan_iter("*"):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out.extend(b"%s=%s" % kv for kv in client.hgetall(key).items())
    client.close()
    return b"\n".join(out)


def _pg_dump(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as con:
        rows = [r[0] for r in con.execute("SELECT t::text FROM decisions t")]
        rows += [r[0] for r in con.execute("SELECT t::text FROM feedback t")]
    return "\n".join(rows)


def test_forget_redis_and_postgres_leave_no_trace(
    tmp_path: Path, bundles: dict[str, Path], redis_url: str, pg_url: str
) -> None:
    settings = _home(tmp_path, bundles, {"CXPREDICT_ONLINE_STORE": redis_url, "CXPREDICT_DECISION_LOG": pg_url})
    assert GONE.encode() in _redis_dump(redis_url)
    _check_forget(settings, bundles)
    assert not (tmp_path / "decisions.sqlite").exists() and not (tmp_path / "online").exists()
    redis_after, pg_after = _redis_dump(redis_url), _pg_dump(pg_url)
    assert GONE.encode() not in redis_after and KEPT.encode() in redis_after
    assert GONE not in pg_after and KEPT in pg_after


def test_forget_and_export_commands(tmp_path: Path, bundles: dict[str, Path], monkeypatch) -> None:
    settings = _home(tmp_path, bundles, {})
    runtime = Runtime(settings)
    try:
        _traffic(runtime)
    finally:
        runtime.decisions.close()
    monkeypatch.setenv("CXPREDICT_HOME", str(tmp_path))
    for var in ("CXPREDICT_ONLINE_STORE", "CXPREDICT_DECISION_LOG"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    exported = runner.invoke(app, ["export", GONE])
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.stdout)
    assert data["customer_id"] == GONE and len(data["decision_log"]["decisions"]) == 2
    forgot = runner.invoke(app, ["forget", GONE, KEPT])
    assert forgot.exit_code == 0, forgot.output
    assert "2 feature rows erased" in forgot.stdout
    assert "3 decisions and 2 feedback records erased" in forgot.stdout
    assert _files_holding(tmp_path, GONE) == [] and _files_holding(tmp_path, KEPT) == []


def test_forget_says_when_a_backend_is_down(tmp_path: Path) -> None:
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_ONLINE_STORE": "redis://127.0.0.1:1/0"})
    with pytest.raises(privacy.BackendUnavailable, match="online store redis://127.0.0.1:1/0: cannot erase"):
        privacy.forget(settings, [GONE])


# --- retention ------------------------------------------------------------------------------------------------
def _decision(customer: str, ts: float) -> dict:
    return {
        "decision_id": new_decision_id(),
        "ts": ts,
        "customer_id": customer,
        "model_versions": {"churn": 1},
        "context": {},
    }


def test_retention_purges_planted_old_rows(tmp_path: Path, monkeypatch) -> None:
    now = time.time()
    old, edge, recent = _decision("a", now - 401 * 86400), _decision("b", now - 399 * 86400), _decision("c", now)
    log = SQLiteDecisionLog(tmp_path / "decisions.sqlite")
    try:
        record(log, old, edge, recent)
        log.add_feedback(old["decision_id"], "converted", 1.0, ts=now - 400.5 * 86400)
        log.add_feedback(edge["decision_id"], "converted", 2.0, ts=now - 398 * 86400)
        log.add_feedback(recent["decision_id"], "converted", 3.0)
    finally:
        log.close()
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path)})
    assert settings.retention_days == 400
    assert privacy.purge_expired(settings, now) == {"decisions": 1, "feedback": 1}
    assert privacy.purge_expired(settings, now) == {"decisions": 0, "feedback": 0}
    monkeypatch.setenv("CXPREDICT_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["retention", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert "erased 1 decisions and 1 feedback records older than 1 days" in result.stdout
    log = SQLiteDecisionLog(tmp_path / "decisions.sqlite")
    try:
        assert count(log) == 1 and read_decision(log, recent["decision_id"])["feedback"][0]["value"] == 3.0
        assert read_decision(log, old["decision_id"]) is None
    finally:
        log.close()


def test_retention_loop_runs_until_stopped(tmp_path: Path) -> None:
    import threading

    log = SQLiteDecisionLog(tmp_path / "decisions.sqlite")
    try:
        record(log, _decision("a", time.time() - 500 * 86400))
    finally:
        log.close()
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path)})
    stop = threading.Event()
    worker = threading.Thread(target=privacy.retention_loop, args=(settings, stop, 0.05, 0.0))
    worker.start()
    deadline = time.monotonic() + 10
    while privacy.export(settings, "a")["decision_log"]["decisions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert privacy.export(settings, "a")["decision_log"]["decisions"] == []


def test_retention_setting_is_validated() -> None:
    assert load_settings({"CXPREDICT_RETENTION_DAYS": "30"}).retention_days == 30
    with pytest.raises(ValueError, match="retention_days"):
        load_settings({"CXPREDICT_RETENTION_DAYS": "0"})


# --- context allowlist ----------------------------------------------------------------------------------------
def test_context_allowlist() -> None:
    keys = load_settings({}).context_keys
    assert keys == ("channel", "campaign", "placement")
    sent = {"channel": "email", "campaign": "spring", "email": "a@b.c", "note": "free text"}
    assert privacy.allowed_context(sent, keys) == {"channel": "email", "campaign": "spring"}
    assert privacy.allowed_context(sent, load_settings({"CXPREDICT_CONTEXT_KEYS": ""}).context_keys) == {}
    custom = load_settings({"CXPREDICT_CONTEXT_KEYS": "note, channel"}).context_keys
    assert privacy.allowed_context(sent, custom) == {"channel": "email", "note": "free text"}


# --- owner-only files -----------------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_under_home_are_owner_only(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = tmp_path
    settings = _home(home, bundles, {})
    runtime = Runtime(settings)
    try:
        _traffic(runtime)
    finally:
        runtime.decisions.close()
    assert _mode(home / "online") == 0o700
    assert _mode(home / "online" / "features.sqlite") == 0o600
    for name in ("decisions.sqlite", "decisions.sqlite.lock"):
        assert _mode(home / name) == 0o600, name
    privacy.forget(settings, [GONE])  # the store's replacement copy is owner-only too
    assert _mode(home / "online" / "features.sqlite") == 0o600


def test_key_manifest_experiments_and_reports_are_created_owner_only(tmp_path: Path) -> None:
    from serving.ab_report import write_html
    from serving.ab_stats import analyze
    from serving.experiments import ExperimentsFile, save_experiments
    from serving.manifest import write_manifest as write_serving_manifest
    from tests.serving.test_ab_report import SHARES, make_units
    from training.demo import ensure_demo_key

    home = tmp_path / "new" / "home"
    settings = load_settings({"CXPREDICT_HOME": str(home)})
    key = ensure_demo_key(settings)
    assert _mode(home) == 0o700 and _mode(settings.demo_key_file) == 0o600
    assert ensure_demo_key(settings) == key  # kept, not rewritten
    write_serving_manifest(home / "serving.json", {"churn": {"version": None}})
    save_experiments(home / "experiments.yaml", ExperimentsFile())
    assert _mode(home / "serving.json") == 0o600 and _mode(home / "experiments.yaml") == 0o600
    units = make_units({"champion": 300, "challenger-v7": 300, "holdout": 60})
    target = home / "reports" / "exp.html"
    write_html(analyze(units, SHARES, "champion"), units, target, "exp", mode=0o600)
    assert _mode(home / "reports") == 0o700 and _mode(target) == 0o600
    assert sorted(p.name for p in home.rglob("*") if p.is_file() and _mode(p) & 0o077) == []


def test_forget_rewrites_an_ab_report_that_named_the_customer(tmp_path: Path) -> None:
    from serving.experiments import Experiment, ExperimentsFile, Variant, save_experiments

    experiment = Experiment(
        name="exp1",
        model="churn",
        variants=[Variant(ref="champion", share=0.5), Variant(ref="challenger", share=0.5)],
        status="stopped",
    )
    save_experiments(tmp_path / "experiments.yaml", ExperimentsFile(experiments=[experiment]))
    log = SQLiteDecisionLog(tmp_path / "decisions.sqlite")
    try:
        customers = [GONE, *(f"k{i}" for i in range(60))]
        decisions = [
            {**_decision(c, time.time()), "experiment": {"name": "exp1", "variant": ("champion", "challenger")[i % 2]}}
            for i, c in enumerate(customers)
        ]
        record(log, *decisions)
        for d in decisions[::3]:
            log.add_feedback(d["decision_id"], "converted", 5.0)
    finally:
        log.close()
    report = tmp_path / "reports" / "exp1.html"
    report.parent.mkdir()
    report.write_text(f"<html>an older report listing {GONE}</html>")
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path)})
    done = privacy.forget(settings, [GONE])
    assert (done.decisions, done.reports_rewritten, done.reports_deleted) == (1, [report], [])
    text = report.read_text()
    assert "exp1" in text and "<!DOCTYPE html>" in text and GONE not in text
    assert _mode(report) == 0o600  # written under the home: owner-only


def test_forget_says_when_a_reader_kept_the_wal_and_a_second_run_empties_it(tmp_path: Path) -> None:
    import sqlite3

    log = SQLiteDecisionLog(tmp_path / "decisions.sqlite")
    reader = sqlite3.connect(tmp_path / "decisions.sqlite", isolation_level=None)
    try:
        record(log, _decision(GONE, time.time()), _decision(KEPT, time.time()))
        settings = load_settings({"CXPREDICT_HOME": str(tmp_path)})
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM decisions").fetchone()[0] == 2  # a snapshot held open
        first = privacy.forget(settings, [GONE])
        assert first.decisions == 1 and "run `cxpredict forget` again" in first.warnings[0]
        assert _files_holding(tmp_path, GONE)  # the WAL still holds the row while the reader's snapshot lives
        reader.execute("COMMIT")
        second = privacy.forget(settings, [GONE])
        assert second.decisions == 0 and second.warnings == []
        assert _files_holding(tmp_path, GONE) == []
    finally:
        reader.close()
        log.close()
