"""Feature build time against data size: `cxpredict features build --engine spark` (local[2]) beside DuckDB.

Usage: python benchmarks/spark_scaling.py [--rows 1000000 5000000 10000000] [--engines duckdb spark]
           [--master local[2]] [--timeout 3600] [--json FILE]

For each size it writes a seeded synthetic ``transactions.parquet`` (one customer per 10 rows, the generator of
``benchmarks/feature_pipeline.py``), then times the real command line — a fresh process per run, so the Spark
figure includes JVM start, validation in DuckDB, staging to Parquet and the query — and checks that both engines
wrote the same table. A least-squares line ``seconds = a + b * rows`` through the measured points gives the
extrapolation to 100M rows that docs/benchmarks.md reports (a linear fit: it assumes the run still fits memory and
local disk, which is exactly what stops holding on one machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_pipeline import make_transactions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2025-01-01"


def build(data: Path, out: Path, engine: str, master: str, timeout: float) -> float | None:
    """Wall seconds of one `cxpredict features build`, or None when it ran past ``timeout``."""
    env = {**os.environ, "CXPREDICT_SPARK_MASTER": master, "CXPREDICT_SPARK_SHUFFLE_PARTITIONS": "8"}
    cmd = [str(ROOT / ".venv/bin/cxpredict"), "features", "build", "--data", str(data), "--as-of", AS_OF]
    cmd += ["--out", str(out), "--engine", engine]
    t0 = time.perf_counter()
    try:
        subprocess.run(cmd, env=env, check=True, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"{engine} failed at {data}:\n{exc.stdout[-2000:]}\n{exc.stderr[-4000:]}") from exc
    return time.perf_counter() - t0


def max_relative_difference(a: Path, b: Path) -> float:
    """Largest relative difference between two feature tables (same customers, same columns)."""
    left = pd.read_parquet(a).sort_values("customer_id").reset_index(drop=True)
    right = pd.read_parquet(b).sort_values("customer_id").reset_index(drop=True)
    if list(left.columns) != list(right.columns) or not left["customer_id"].equals(right["customer_id"]):
        return float("inf")
    worst = 0.0
    for column in left.columns.drop("customer_id"):
        x, y = left[column], right[column]
        if not pd.api.types.is_numeric_dtype(x):
            worst = max(worst, 0.0 if x.fillna("").equals(y.fillna("")) else float("inf"))
            continue
        x, y = x.to_numpy(float), y.to_numpy(float)
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            return float("inf")
        ok = ~np.isnan(x)
        diff = np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-12)
        worst = max(worst, float(diff.max(initial=0.0)))
    return worst


def main() -> None:
    """Run the sizes, print one line per measurement and the 100M extrapolation."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000, 10_000_000])
    parser.add_argument("--engines", nargs="+", default=["duckdb", "spark"], choices=["duckdb", "spark"])
    parser.add_argument("--master", default="local[2]")
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
                seconds = build(data, outs[engine], engine, args.master, args.timeout)
                line = {"rows": rows, "engine": engine, "seconds": seconds, "master": args.master}
                if seconds is not None:
                    results[engine].append((rows, seconds))
                if engine == "spark" and "duckdb" in outs and seconds is not None:
                    line["max_rel_diff_vs_duckdb"] = max_relative_difference(outs["duckdb"], outs["spark"])
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
