"""Killing processes: a dead worker is replaced; SIGKILL of the whole server under load loses nothing acknowledged."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from serving.decision_log import SQLiteDecisionLog
from serving.decision_log_pg import PostgresDecisionLog
from tests.conftest import throwaway_database
from tests.serving.conftest import API_KEY, launch, make_home, process_tree, stop
from tests.serving.logged import read_decision

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def workers(pid: int) -> list[psutil.Process]:
    """The BentoML worker processes under a server (the processes that import the service)."""
    found = []
    for p in process_tree(pid):
        try:
            if "_bentoml_impl.worker" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    make_home(tmp_path)
    proc, url = launch(tmp_path, tmp_path / "server.log")
    try:
        (worker,) = workers(proc.pid)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 60
        while True:
            replaced = [w for w in workers(proc.pid) if w.pid != worker.pid]
            try:
                ok = (
                    replaced
                    and httpx.post(
                        f"{url}/v1/churn", json={"customer_id": "c1"}, headers=HEADERS, timeout=2
                    ).status_code
                    == 200
                )
            except httpx.HTTPError:
                ok = False
            if ok:
                break
            assert time.monotonic() < deadline, "no new worker answered within 60 s"
            time.sleep(0.5)
    finally:
        stop(proc)


@pytest.fixture(params=["sqlite", "postgresql"])
def decision_log_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """No URL (the embedded SQLite log) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    with throwaway_database("cxp_kill") as url:
        yield url


def test_sigkill_of_the_whole_server_under_load_loses_no_acknowledged_decision_or_feedback(
    tmp_path: Path, decision_log_url: str | None
) -> None:
    customers = make_home(tmp_path)
    ids = list(customers["customer_id"])
    extra = {"CXPREDICT_DECISION_LOG": decision_log_url} if decision_log_url else {}
    proc, url = launch(tmp_path, tmp_path / "server.log", workers=2, extra_env=extra)
    decisions: list[str] = []
    feedback: list[str] = []
    stopping = threading.Event()

    def load(n: int) -> None:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=5) as client:
            i = n
            while not stopping.is_set():
                i += 1
                try:
                    r = client.post("/v1/personalize", json={"customer_id": ids[i % len(ids)]})
                    if r.status_code == 200:
                        decision_id = r.json()["decision_id"]
                        decisions.append(decision_id)
                        body = {"decision_id": decision_id, "outcome": "converted", "value": 1.0}
                        if i % 3 == 0 and client.post("/v1/feedback", json=body).status_code == 200:
                            feedback.append(decision_id)
                except httpx.HTTPError:
                    pass  # the server is being killed: unacknowledged, nothing promised

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(4)
    tree = process_tree(proc.pid)
    for p in tree:  # the whole server at once, workers included, mid-load
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=10)
    stopping.set()
    for t in threads:
        t.join(timeout=10)
    acknowledged, with_feedback = list(decisions), list(feedback)
    assert len(acknowledged) > 50 and with_feedback, (len(acknowledged), len(with_feedback))
    proc, url = launch(tmp_path, tmp_path / "server2.log", workers=2, extra_env=extra)  # restart on the same log
    try:
        assert httpx.post(f"{url}/v1/churn", json={"customer_id": "c1"}, headers=HEADERS).status_code == 200
    finally:
        stop(proc)
    log = (
        PostgresDecisionLog(decision_log_url) if decision_log_url else SQLiteDecisionLog(tmp_path / "decisions.sqlite")
    )
    try:
        lost = [d for d in acknowledged if read_decision(log, d) is None]
        assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged decisions lost"
        lost_feedback = [d for d in with_feedback if not read_decision(log, d)["feedback"]]
        assert not lost_feedback, f"{len(lost_feedback)} of {len(with_feedback)} acknowledged feedback lost"
    finally:
        log.close()
    backend = "postgresql" if decision_log_url else "sqlite"
    print(f"kill test ({backend}): {len(acknowledged)} decisions, {len(with_feedback)} feedback acked, none lost")
