"""Commit latency when several processes write one decision log: the file lock against SQLite's busy wait.

Usage: python benchmarks/decision_log_processes.py [--processes 2] [--decisions 3000] [--pause-ms 0.5]

Like ``cxpredict serve`` with several workers: each process opens the same ``serving.decision_log.SQLiteDecisionLog``
and submits one decision at a time (``--pause-ms`` apart), waiting until it is committed. Run once as the service
runs it (writers take turns on ``decisions.sqlite.lock``) and once with the file lock switched off, as on a platform
without ``fcntl``, where a writer that finds the file's write lock taken waits in SQLite's busy handler, which
sleeps 1, 2, 5, 10 ... 100 ms between tries. Prints each process's commit latency (p50, p99, max, in ms).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Ahead of this directory, whose serving.py (the HTTP benchmark) would shadow the `serving` package.
sys.path.insert(0, str(REPO))

from serving import decision_log  # noqa: E402


def _writer(path: str, decisions: int, pause_s: float, file_lock: bool, start: object, out: object) -> None:
    if not file_lock:
        decision_log.fcntl = None  # type: ignore[assignment]
    log = decision_log.SQLiteDecisionLog(Path(path))
    outputs = {"churn": {"reasons": "x" * 1400}}  # about the served size
    start.wait()  # type: ignore[attr-defined]
    latencies = []
    for i in range(decisions):
        t0 = time.perf_counter()
        log.submit([{"decision_id": decision_log.new_decision_id(), "customer_id": f"c{i}", **outputs}]).result()
        latencies.append(time.perf_counter() - t0)
        time.sleep(pause_s)
    log.close()
    latencies.sort()
    out.put(  # type: ignore[attr-defined]
        tuple(1000 * latencies[min(int(q * len(latencies)), len(latencies) - 1)] for q in (0.5, 0.99, 1.0))
    )


def run(processes: int, decisions: int, pause_s: float, file_lock: bool) -> list[tuple[float, float, float]]:
    """(p50, p99, max) commit latency in ms of each process."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decisions.sqlite"
        decision_log.SQLiteDecisionLog(path).close()  # as `cxpredict serve` does before its workers start
        start, out = ctx.Barrier(processes), ctx.Queue()
        procs = [
            ctx.Process(target=_writer, args=(str(path), decisions, pause_s, file_lock, start, out))
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
    return results


def main() -> int:
    """Run with and without the file lock and print the latencies."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--decisions", type=int, default=3000, help="decisions per process")
    parser.add_argument("--pause-ms", type=float, default=0.5, help="pause between one process's decisions")
    args = parser.parse_args()
    print("| writers take turns on | process | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for file_lock, name in ((True, "the file lock (the service)"), (False, "SQLite's busy wait (no fcntl)")):
        for k, (p50, p99, worst) in enumerate(run(args.processes, args.decisions, args.pause_ms / 1000, file_lock)):
            print(f"| {name} | {k + 1} | {p50:.2f} | {p99:.2f} | {worst:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
