"""Feature-pipeline speed: N transaction rows (default 10M) over M customers (default 1M), in DuckDB.

Usage: python benchmarks/feature_pipeline.py [--rows 10000000] [--customers 1000000]
Prints load/validation time, feature build time, peak RSS and the table shape.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.data import load_data_dir
from features.pipeline import build_features


def make_transactions(rows: int, customers: int, out: Path, seed: int = 0) -> Path:
    """Write a Parquet file of random purchase lines over two years."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00")
    ts = start + rng.integers(0, 730 * 86400, rows).astype("timedelta64[s]")
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(rng.integers(0, customers, rows)).map("c{:07d}".format),
            "ts": ts,
            "amount": np.round(rng.gamma(2.0, 20.0, rows) * np.where(rng.random(rows) < 0.03, -1, 1), 2),
            "order_id": pd.Series(rng.integers(0, rows // 3, rows)).map("o{:08d}".format),
            "category": rng.choice(list("abcdefgh"), rows),
            "channel": rng.choice(["web", "app", "store", "phone"], rows),
        }
    )
    path = out / "transactions.parquet"
    frame.to_parquet(path, index=False)
    return path


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        make_transactions(args.rows, args.customers, Path(tmp))
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        con, _ = load_data_dir(Path(tmp))
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        frame = build_features(con, datetime(2025, 1, 1))
        t_build = time.perf_counter() - t0
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"load + validate: {t_load:.1f} s")
    print(f"build features:  {t_build:.1f} s  ({len(frame):,} customers x {frame.shape[1] - 1} features)")
    print(f"peak RSS (whole process, incl. data generation): {rss_gb:.1f} GB")


if __name__ == "__main__":
    main()
