"""Decision-log inserts with random (uuid4) against time-ordered decision ids.

Usage: python benchmarks/decision_log_ids.py [--rows 40000] [--group 4]

Creates the decision log's schema (``serving.decision_log``) in a temporary SQLite file per id kind (WAL,
``synchronous=NORMAL``, as the service opens it), then inserts ``--rows`` decisions of the served size (about
1.4 KB of outputs) in transactions of ``--group`` rows, and prints microseconds per row for each tenth of the run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Ahead of this directory, whose serving.py (the HTTP benchmark) would shadow the `serving` package.
sys.path.insert(0, str(REPO))

from serving.decision_log import _SCHEMA, new_decision_id  # noqa: E402

INSERT = (
    "INSERT INTO decisions (decision_id, ts, customer_id, endpoint, experiment, variant, model_versions, context, "
    "outputs, propensity, offer_id, shadow, pre_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def run(path: Path, make_id: Callable[[], str], rows: int, group: int) -> list[float]:
    """Microseconds per row for each tenth of ``rows`` inserts."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(_SCHEMA)
    outputs = json.dumps({"churn": {"reasons": "x" * 1400}})
    tenth = max(rows // 10, group)
    laps: list[float] = []
    done, lap = 0, time.perf_counter()
    while done < rows:
        batch = [
            (make_id(), time.time(), f"c{(done + i) % 3000:06d}", "personalize", None, None, "{}", "{}", outputs)
            + (None, None, 0, None)
            for i in range(group)
        ]
        con.execute("BEGIN IMMEDIATE")
        con.executemany(INSERT, batch)
        con.execute("COMMIT")
        done += group
        if done % tenth == 0:
            now = time.perf_counter()
            laps.append((now - lap) / tenth * 1e6)
            lap = now
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")
    con.close()
    return laps


def main() -> int:
    """Run both id kinds and print the per-row cost as the table grows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--group", type=int, default=4, help="rows per transaction (one group commit)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, make_id in (("uuid4", lambda: uuid.uuid4().hex), ("time-ordered", new_decision_id)):
            laps = run(Path(tmp) / f"{name}.sqlite", make_id, args.rows, args.group)
            print(f"{name:>13}: us per row by tenth of the run: " + " ".join(f"{x:.0f}" for x in laps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
