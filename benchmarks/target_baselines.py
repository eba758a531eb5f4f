"""Retention targeting under a budget against what marketers do today, by a doubly robust estimate.

Generates the synthetic dataset, trains and promotes the three models at T (real MLflow in a temporary
directory), then runs ``serving.target.run_target`` (dry run) at T for several budgets; the baselines are
evaluated on the randomised offers logged in ``[T, T + window)``, after the offer model's training data::

    .venv/bin/python benchmarks/target_baselines.py --customers 5000 --budgets 500,2000,5000 --window-days 90

This is the end-to-end check through the registry and ``cxpredict target``; the figures in
docs/benchmarks-quality.md come from ``benchmarks/quality.py`` (the same comparison,
``serving.target.compare_targeting``, on each data set's holdout offers, without MLflow).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# First on the path: this folder's own serving.py (a benchmark) must not shadow the serving package.
sys.path.insert(0, str(ROOT))

from features.settings import Settings  # noqa: E402
from features.synthetic import SyntheticConfig, generate, write_dataset  # noqa: E402
from serving.target import POLICIES, run_target  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", default="2024-10-01")
    parser.add_argument("--budgets", default="500,2000,5000")
    parser.add_argument("--window-days", type=int, default=90)
    args = parser.parse_args()
    t = datetime.fromisoformat(args.as_of)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(generate(SyntheticConfig(n_customers=args.customers, seed=args.seed)), root / "data")
        settings = Settings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", home=root / "home")
        train(root / "data", t, TrainConfig(promote=True), settings)
        print(f"synthetic, {args.customers} customers (seed {args.seed}), T = {t:%Y-%m-%d}, default TrainConfig")
        for budget in (float(b) for b in args.budgets.split(",")):
            res = run_target(
                root / "data", t, budget, root / "c.csv", settings, dry_run=True, eval_window_days=args.window_days
            )
            ev = res.evaluation
            print(
                f"\n### budget {budget:g}: chose {len(res.campaign)}, cost {res.spent:.1f}, model value saved "
                f"{res.value_saved:.1f} ({res.value_saved / res.upper_bound:.1%} of the LP bound "
                f"{res.upper_bound:.1f})"
            )
            if "skipped" in ev:
                print(f"baselines skipped: {ev['skipped']}")
                continue
            print(
                f"DR on {ev['customers']} logged offers from {ev['cut'][:10]} (+{args.window_days} d), "
                f"eval budget {ev['budget']:.1f}, best single offer {ev['best_single_offer']}, "
                f"in-sample {ev['in_sample']}\n"
            )
            print("| policy | contacted | DR value saved (total) | 95% interval | chosen minus policy | 95% interval |")
            print("|---|---:|---:|---|---:|---|")
            for p in POLICIES:
                est = ev[p]["total"]
                diff = ev.get(f"diff_{p}")
                d = f"{diff.value:.1f} | [{diff.low:.1f}, {diff.high:.1f}]" if diff else "- | -"
                print(f"| {p} | {ev[p]['contacted']} | {est.value:.1f} | [{est.low:.1f}, {est.high:.1f}] | {d} |")
    print(f"\nruntime {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
