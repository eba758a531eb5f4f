"""Every decision the service acknowledged survives a SIGKILL of the server under load."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.serving.conftest import API_KEY, launch, make_home, process_tree, stop


def test_acknowledged_decisions_survive_sigkill_under_load(tmp_path: Path) -> None:
    make_home(tmp_path)
    proc, url = launch(tmp_path, tmp_path / "server.log")
    acked: list[str] = []
    lock = threading.Lock()
    halt = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5) as c:
            i = 0
            while not halt.is_set():
                i += 1
                try:
                    r = c.post("/v1/personalize", json={"customer_id": f"c{(k * 7 + i) % 50}"})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(r.json()["decision_id"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    try:
        for t in threads:
            t.start()
        time.sleep(3.0)
        tree = process_tree(proc.pid)
        assert len(tree) >= 2, "expected the BentoML arbiter and its worker"
        # Mid-load, with requests in flight: the worker (which owns the decision log) and the arbiter die at once.
        for p in reversed(tree):
            p.kill()
        proc.wait(timeout=10)
        psutil.wait_procs(tree, timeout=10)
    finally:
        halt.set()
        for t in threads:
            t.join(timeout=10)
        stop(proc)
    assert len(acked) > 100, f"too little load to test anything: {len(acked)} answers"
    with sqlite3.connect(tmp_path / "decisions.sqlite") as con:
        stored = {r[0] for r in con.execute("SELECT decision_id FROM decisions").fetchall()}
    lost = [d for d in acked if d not in stored]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged decisions lost"
