"""Soak: ``cxpredict serve`` under steady load for a long time, with feedback and a promotion in the middle.

Usage: python benchmarks/soak.py [--duration 600] [--share 0.7] [--capacity-seconds 15] [--customers 3000]
                                 [--interval 30] [--json FILE] [--workdir DIR]

In a temporary directory (or ``--workdir``: a demo left there by an earlier run is used again, which saves its
minutes of setup): ``cxpredict demo``, then ``cxpredict serve`` on a free loopback port. The capacity is
measured first (``hey``, 8 connections, no rate limit, ``--capacity-seconds``); the soak then loads
``POST /v1/personalize`` at ``--share`` of it (``hey -q``, the same 8 connections) in runs of ``--interval``
seconds, while another client asks for a decision and posts feedback on it five times a second. Half-way, the
churn champion's artifacts are registered as a new version and promoted, which the service picks up without a
restart (the registry check runs every 2 s here).

Reports, per interval: requests, errors (any status but 200, or no answer), requests/s, p50/p99 latency and the
workers' resident memory at the interval's start; at the end the error total (feedback included), the workers' RSS
growth from the first interval to the end, and p99 of the first and last intervals. Exit code 1 on any error or a
failed promotion. ``hey`` and the feedback client run on the same machine as the server and take CPU from it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("bench_serving", REPO / "benchmarks" / "serving.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_serving"] = bench  # its dataclasses look their module up
_spec.loader.exec_module(bench)

HOST = bench.HOST
HEADERS = {"Authorization": f"Bearer {bench.API_KEY}"}
#: hey's connections, for the capacity measurement and the soak alike.
CONNECTIONS = 8


def worker_rss_mb(server: Any) -> float:
    """Resident memory of the BentoML workers under ``server`` (MB, summed)."""
    total = 0
    try:
        processes = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for p in processes:
        try:
            if "_bentoml_impl.worker" in " ".join(p.cmdline()):
                total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return round(total / 1e6, 1)


def promote_copy_of_churn(env: dict[str, str], cwd: Path) -> int:
    """Register the churn champion's artifacts again as a new version and make it champion; returns the version."""
    code = (
        "from mlflow import MlflowClient; c = MlflowClient();"
        "v = c.get_model_version_by_alias('churn', 'champion');"
        "print(c.create_model_version('churn', v.source, v.run_id).version)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    version = done.stdout.split()[-1]
    bench.run_cli(env, cwd, "promote", "churn", version, "--alias", "champion")
    return int(version)


class Feedback(threading.Thread):
    """A client that keeps asking for a decision and sending feedback on it (a few per second), counting errors."""

    def __init__(self, url: str, customers: list[str], per_second: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.url, self.customers, self.pause = url, customers, 1.0 / per_second
        self.stop = threading.Event()
        self.ok = self.errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=HEADERS, timeout=10) as client:
            i = 0
            while not self.stop.wait(self.pause):
                i += 1
                try:
                    r = client.post("/v1/personalize", json={"customer_id": self.customers[i % len(self.customers)]})
                    body = {"decision_id": r.json().get("decision_id"), "outcome": "converted", "value": 10.0}
                    f = client.post("/v1/feedback", json=body) if r.status_code == 200 else r
                except (httpx.HTTPError, ValueError):
                    self.errors += 1
                    continue
                if f.status_code == 200:
                    self.ok += 1
                else:
                    self.errors += 1


def hey_run(hey: str, url: str, body: Path, seconds: float, rate: float | None) -> Any:
    """One bounded ``hey`` run at :data:`CONNECTIONS` connections, rate-limited to ``rate`` requests/s in total."""
    command = [hey, "-z", f"{seconds:g}s", "-c", str(CONNECTIONS), "-m", "POST", "-T", "application/json"]
    if rate:
        command += ["-q", f"{rate / CONNECTIONS:.2f}"]
    command += ["-H", HEADERS["Authorization"].join(["Authorization: ", ""]), "-D", str(body), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return bench.parse_hey(done.stdout, "soak", CONNECTIONS, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of soak (default 600)")
    parser.add_argument("--share", type=float, default=0.7, help="share of the measured capacity (default 0.7)")
    parser.add_argument("--capacity-seconds", type=float, default=15.0)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per reported interval")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep the demo here; one already there is used again")
    args = parser.parse_args()
    hey = bench.ensure_hey()
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cxpredict-soak-")))
        else:
            tmp = args.workdir.resolve()
            tmp.mkdir(parents=True, exist_ok=True)
        env = {**_demo(tmp, args.customers), "CXPREDICT_RELOAD_SECONDS": "2"}
        port = bench.free_port()
        server = bench.Server(
            "cxpredict serve",
            [*bench.cxpredict_command(), "serve", "--port", str(port), "--host", HOST],
            tmp,
            env,
            tmp / "serve.log",
        )
        feedback: Feedback | None = None
        try:
            server.wait_ready(f"http://{HOST}:{port}/readyz")
            base = f"http://{HOST}:{port}"
            with sqlite3.connect(f"file:{tmp / 'home' / 'online' / 'features.sqlite'}?mode=ro", uri=True) as con:
                customers = [r[0] for r in con.execute("SELECT customer_id FROM features")]
            body = tmp / "body.json"
            body.write_text(json.dumps({"customer_id": bench.a_customer(tmp / "home")}))
            measured = hey_run(hey, f"{base}/v1/personalize", body, args.capacity_seconds, None).rps
            rate = max(1.0, measured * args.share)
            print(f"capacity {measured:.0f} req/s at {CONNECTIONS} connections; soak at {rate:.0f} req/s", flush=True)
            feedback = Feedback(base, customers)
            feedback.start()
            promoted: list[int] = []
            promoter = threading.Thread(target=lambda: promoted.append(promote_copy_of_churn(env, tmp)), daemon=True)
            rows: list[dict[str, Any]] = []
            start = time.monotonic()
            print(f"{'t(s)':>6} {'sent':>6} {'errors':>6} {'rps':>6} {'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>8}")
            while (elapsed := time.monotonic() - start) < args.duration:
                if elapsed >= args.duration / 2 and not promoter.is_alive() and not promoted:
                    promoter.start()
                rss = worker_rss_mb(server)
                seconds = min(args.interval, args.duration - elapsed)
                result = hey_run(hey, f"{base}/v1/personalize", body, seconds, rate)
                row = {
                    "t_s": round(elapsed),
                    "sent": result.requests,
                    "errors": result.errors,
                    "rps": result.rps,
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "worker_rss_mb": rss,
                }
                rows.append(row)
                print(
                    f"{row['t_s']:>6} {row['sent']:>6} {row['errors']:>6} {row['rps']:>6.0f} "
                    f"{_ms(row['p50_ms']):>7} {_ms(row['p99_ms']):>7} {rss:>8}",
                    flush=True,
                )
            feedback.stop.set()
            feedback.join(timeout=15)
            promoter.join(timeout=120)
            final_rss = worker_rss_mb(server)
            errors = sum(r["errors"] for r in rows) + feedback.errors
            first_rss = rows[0]["worker_rss_mb"] if rows else None
            growth = (final_rss / first_rss - 1) * 100 if first_rss else None
            p99s = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
            report = {
                "duration_s": args.duration,
                "capacity_rps": round(measured, 1),
                "rate_rps": round(rate, 1),
                "workers": server.worker_count(),
                "promoted_churn_version": promoted[0] if promoted else None,
                "requests": sum(r["sent"] for r in rows),
                "errors": errors,
                "feedback_ok": feedback.ok,
                "feedback_errors": feedback.errors,
                "worker_rss_first_last_mb": [first_rss, final_rss],
                "worker_rss_growth_pct": round(growth, 1) if growth is not None else None,
                "p99_first_last_ms": [round(p99s[0], 1), round(p99s[-1], 1)] if p99s else None,
                "intervals": rows,
                "loadavg": bench._loadavg(),
            }
            print(
                f"errors {errors} of {report['requests']} requests and {feedback.ok + feedback.errors} feedback "
                f"round trips; worker RSS {first_rss} -> {final_rss} MB ({report['worker_rss_growth_pct']}%); "
                f"p99 first/last interval {report['p99_first_last_ms']} ms; churn v{report['promoted_churn_version']} "
                f"promoted half-way; load average {report['loadavg']}"
            )
            if args.json:
                args.json.write_text(json.dumps(report, indent=2))
            return 0 if errors == 0 and promoted else 1
        finally:
            if feedback is not None:
                feedback.stop.set()
            server.stop()


def _demo(tmp: Path, customers: int) -> dict[str, str]:
    """``cxpredict demo`` in ``tmp`` unless an earlier run left one there; the environment of the run's commands."""
    done = tmp / "demo-done"
    if not done.exists():
        env = bench.setup(tmp, customers)
        done.write_text(f"--customers {customers}\n")
        return env
    print(f"setup: the demo already in {tmp} ({done.read_text().strip()})", flush=True)
    # What benchmarks/serving.py's setup gives the demo's commands.
    return {
        **os.environ,
        "CXPREDICT_HOME": str(tmp / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "CXPREDICT_API_KEYS": bench.API_KEY,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(tmp / "bentoml"),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
