"""Feature build time against data size: `cxpredict features build --engine spark` (local[2]) beside DuckDB.

Usage: python benchmarks/spark_scaling.py [--rows 1000000 5000000 10000000] [--engines duckdb spark]
           [--master local[2]] [--driver-memory 6g] [--timeout 3600] [--json FILE]

For each size it writes a seeded synthetic ``transactions.parquet`` (one customer per 10 rows, the generator of
``benchmarks/feature_pipeline.py``), then times the real command line — a fresh process per run, so the Spark
figure includes JVM start, validation in DuckDB, staging to Parquet and the query — and checks that both engines
wrote the same table. Each line also gives the 1-minute load average sampled during the run (mean and maximum) and
the process's nice value: on a shared machine the figure means little without them. Run it under ``nice -n 19``
there so it does not starve other work. A least-squares line ``seconds = a + b * rows`` through the measured
points gives the extrapolation to 100M rows that docs/benchmarks.md reports (a linear fit: it assumes the run
still fits memory and local disk, which is exactly what stops holding on one machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_pipeline import make_transactions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2025-01-01"


def spark_conf_dir(directory: Path, driver_memory: str) -> Path:
    """A ``SPARK_CONF_DIR`` whose spark-defaults.conf sizes the driver (in local mode it runs the executors too).

    Spark's default 1 GB driver heap fails at 5M rows on collecting the 500k-row result; this is the ordinary
    Spark setting for that, not something the engine hard-codes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spark-defaults.conf").write_text(f"spark.driver.memory {driver_memory}\n")
    return directory


class LoadSampler:
    """Samples the 1-minute load average every ``every`` seconds while a build runs (the machine may be shared)."""

    def __init__(self, every: float = 15.0) -> None:
        self._every = every
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self._samples.append(os.getloadavg()[0])
            if self._stop.wait(self._every):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        """Mean and maximum of the sampled 1-minute load averages."""
        samples = self._samples or [os.getloadavg()[0]]
        return {"load_mean": round(float(np.mean(samples)), 1), "load_max": round(max(samples), 1)}


def build(data: Path, out: Path, engine: str, master: str, timeout: float, conf_dir: Path) -> float | None:
    """Wall seconds of one `cxpredict features build`, or None when it ran past ``timeout``.

    The command runs in its own process group so that a timeout also stops the JVM that PySpark started.
    """
    env = {
        **os.environ,
        "CXPREDICT_SPARK_MASTER": master,
        "CXPREDICT_SPARK_SHUFFLE_PARTITIONS": "8",
        "SPARK_CONF_DIR": str(conf_dir),
    }
    cmd = [str(ROOT / ".venv/bin/cxpredict"), "features", "build", "--data", str(data), "--as-of", AS_OF]
    cmd += ["--out", str(out), "--engine", engine]
    t0 = time.perf_counter()
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None
    if proc.returncode != 0:
        log = Path(tempfile.gettempdir()) / f"spark_scaling_{engine}_failed.log"
        log.write_text(stdout + stderr)
        raise SystemExit(f"{engine} failed at {data} (whole output in {log}):\n{stderr[-4000:]}")
    return time.perf_counter() - t0


def max_relative_difference(a: Path, b: Path) -> tuple[float, str]:
    """Largest relative difference between two feature tables (same customers, same columns), and its column."""
    left = pd.read_parquet(a).sort_values("customer_id").reset_index(drop=True)
    right = pd.read_parquet(b).sort_values("customer_id").reset_index(drop=True)
    if list(left.columns) != list(right.columns) or not left["customer_id"].equals(right["customer_id"]):
        return float("inf"), "customer_id or the column list"
    worst, where = 0.0, ""
    for column in left.columns.drop("customer_id"):
        x, y = left[column], right[column]
        if not pd.api.types.is_numeric_dtype(x):
            diff = 0.0 if x.fillna("").equals(y.fillna("")) else float("inf")
        else:
            x, y = x.to_numpy(float), y.to_numpy(float)
            if not np.array_equal(np.isnan(x), np.isnan(y)):
                return float("inf"), f"{column} (missing values differ)"
            ok = ~np.isnan(x)
            diff = float((np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-12)).max(initial=0.0))
        if diff > worst:
            worst, where = diff, column
    return worst, where


def main() -> None:
    """Run the sizes, print one line per measurement and the 100M extrapolation."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000, 10_000_000])
    parser.add_argument("--engines", nargs="+", default=["duckdb", "spark"], choices=["duckdb", "spark"])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g", help="spark.driver.memory (local mode: all of Spark)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per build before giving up")
    parser.add_argument("--json", type=Path, help="append each measurement to this JSON-lines file")
    args = parser.parse_args()
    results: dict[str, list[tuple[int, float]]] = {e: [] for e in args.engines}
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            make_transactions(rows, max(rows // 10, 1), data)
            outs = {}
            for engine in args.engines:
                outs[engine] = Path(tmp) / f"{engine}.parquet"
                conf = spark_conf_dir(Path(tmp) / "spark-conf", args.driver_memory)
                with LoadSampler() as load:
                    seconds = build(data, outs[engine], engine, args.master, args.timeout, conf)
                line = {"rows": rows, "engine": engine, "seconds": seconds, "master": args.master}
                line |= load.summary() | {"nice": os.nice(0)}
                if seconds is None:
                    line["timeout_seconds"] = args.timeout
                if engine == "spark":
                    line["driver_memory"] = args.driver_memory
                if seconds is not None:
                    results[engine].append((rows, seconds))
                if engine == "spark" and "duckdb" in outs and seconds is not None:
                    diff, column = max_relative_difference(outs["duckdb"], outs["spark"])
                    line["max_rel_diff_vs_duckdb"], line["worst_column"] = diff, column
                print(json.dumps(line), flush=True)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps(line) + "\n")
    for engine, points in results.items():
        if len(points) >= 2:
            x, y = np.array(points, dtype=float).T
            slope, intercept = np.polyfit(x, y, 1)
            print(
                f"{engine}: {intercept:.1f} s + {slope * 1e6:.2f} s per million rows -> 100M rows ~ "
                f"{intercept + slope * 1e8:.0f} s (linear fit through {len(points)} sizes)"
            )


if __name__ == "__main__":
    main()
