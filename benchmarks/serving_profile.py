"""Where one ``/v1/personalize`` answer spends its time inside the worker (no HTTP), on the demo models.

Usage: python benchmarks/serving_profile.py [--customers 3000] [--calls 500] [--rounds 5]

In a temporary directory: ``cxpredict demo``, the serving manifest, then a :class:`serving.runtime.Runtime` as the
worker builds it. Each step is timed over ``--calls`` calls and the best of ``--rounds`` rounds is printed in
milliseconds per call, next to XGBoost's public API for the same predictions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# This folder holds a `serving.py`: the repository must come first so `serving` is the package.
sys.path.insert(0, str(REPO))


def best_ms(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Best of ``rounds`` mean times of ``calls`` calls, in milliseconds."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return 1000.0 * best


def spaced_ms(fn: Callable[[], object], calls: int, gap_s: float = 0.001) -> float:
    """Median time of ``calls`` calls with ``gap_s`` of sleep before each, in milliseconds.

    Between HTTP requests a worker waits; on this kind of machine its caches are cold again when the next
    request comes, and the same call then takes longer than in a tight loop.
    """
    times = []
    for _ in range(calls):
        time.sleep(gap_s)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxpredict-profile-"))
    try:
        env = {
            **os.environ,
            "CXPREDICT_HOME": str(tmp / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
            "CXPREDICT_API_KEYS": "profile-key",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        demo = [sys.executable, "-m", "cxpredict.cli", "demo", "--data", str(tmp / "data")]
        subprocess.run([*demo, "--customers", str(args.customers)], cwd=tmp, env=env, check=True, capture_output=True)
        os.environ.update(env)
        os.environ.setdefault("OMP_NUM_THREADS", "1")

        import numpy as np
        import xgboost as xgb

        from features.scoring import Predictor
        from features.settings import load_settings
        from serving.answers import score
        from serving.manifest import resolve_champions
        from serving.runtime import MODELS, Runtime

        settings = load_settings()
        resolve_champions(settings)
        rt = Runtime(settings)
        cid = next(iter(rt.store.get_many([f"c{i:06d}" for i in range(1, 50)])))
        row = rt.store.get(cid)
        models = rt.models
        churn, cltv, nbo = (models.bundles[m] for m in MODELS)
        x = churn.encoder.encode_rows([row])
        xb = churn.inputs(x)  # the booster's own inputs: the features, then the BG/NBD ones
        main_booster = churn.boosters["main"]
        c_call = Predictor(main_booster)  # never prepared: no forest, XGBoost's C function for every call

        def lone_request() -> None:
            rt.decide([rt.prepare(cid)])[1].result()

        steps: list[tuple[str, Callable[[], object]]] = [
            ("online store lookup", lambda: rt.store.get(cid)),
            ("encode one row", lambda: churn.encoder.encode_rows([row])),
            ("churn probability (numpy forest)", lambda: churn.churn_probability(x)),
            ("  same prediction, XGBoost's C call", lambda: c_call.predict(xb)),
            ("  same prediction, XGBoost public API", lambda: main_booster.inplace_predict(xb)),
            ("churn reasons (SHAP)", lambda: churn.churn_reasons(x)),
            (
                "  same contributions, public API",
                lambda: main_booster.predict(xgb.DMatrix(xb, missing=np.nan, nthread=1), pred_contribs=True),
            ),
            ("cltv spend and value", lambda: cltv.spend(x)),
            ("offer ranking", lambda: nbo.offer_scores(x, [row])),
            ("all three models (serving.answers.score)", lambda: score(models, [row], MODELS)),
            ("prepare + decide (+ route, record, queue)", lambda: rt.decide([rt.prepare(cid)])),
            ("personalize (+ wait for the writer thread's commit)", lambda: rt.personalize(cid)),
            ("  same, committed by the calling thread (a lone request)", lone_request),
        ]
        together = [rt.prepare(c) for c in rt.store.get_many([f"c{i:06d}" for i in range(1, 200)])][:8]

        def decide_together() -> None:
            rt.decide(together)[1].result()

        print(f"{args.customers} demo customers, customer {cid}; best of {args.rounds} x {args.calls} calls")
        print("| step | ms per call |\n|---|---:|")
        for name, fn in steps:
            print(f"| {name} | {best_ms(fn, args.calls, args.rounds):.3f} |", flush=True)
        per_customer = best_ms(decide_together, args.calls // 8 or 1, args.rounds) / len(together)
        print(f"| {len(together)} customers decided together and committed, per customer | {per_customer:.3f} |")
        print(
            "| personalize, one call after each 1 ms pause (median) | "
            f"{spaced_ms(lambda: rt.personalize(cid), 300):.3f} |"
        )
        print(
            "| churn probability, one call after each 1 ms pause (median): numpy forest | "
            f"{spaced_ms(lambda: churn.churn_probability(x), 300):.3f} |"
        )
        print(f"|   same, XGBoost's C call | {spaced_ms(lambda: c_call.predict(x), 300):.3f} |")
        print(
            f"| all three models, one call after each 1 ms pause (median) | "
            f"{spaced_ms(lambda: score(models, [row], MODELS), 300):.3f} |"
        )
        rt.decisions.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
