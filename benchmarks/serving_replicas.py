"""Two ``cxpredict serve`` replicas on loopback against one, on the shared backends (Redis, PostgreSQL).

Usage: python benchmarks/serving_replicas.py [--duration 10] [--warmup 2] [--customers 3000] [--workers 1]
                                             [--redis-db 13] [--json FILE]

``cxpredict demo`` writes the online store into Redis db ``--redis-db`` (emptied before and after) and a throwaway
PostgreSQL database takes the decision log (dropped afterwards); MLflow stays an SQLite file both replicas read
(only the serve parents poll it, never the request path). Replica A is loaded alone by ``hey`` at 8 and 32
connections; then A and B are loaded at the same time, each by its own ``hey`` with half the connections, and
their requests are added up. Every request is logged to the shared decision log before it is answered. Each
replica runs ``--workers`` worker processes, so two replicas use twice the processes of one: on a machine with
fewer cores than that, the figure shows what a second replica costs, not what it gains on its own host.
Reuses the load and server helpers of ``benchmarks/serving.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from types import ModuleType


def _serving_bench() -> ModuleType:
    """``benchmarks/serving.py`` under another module name (``serving`` is the project's package)."""
    spec = importlib.util.spec_from_file_location("serving_bench", Path(__file__).with_name("serving.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


bench = _serving_bench()
HOST, Result, Server = bench.HOST, bench.Result, bench.Server

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECTIONS = (8, 32)


def start(name: str, tmp: Path, env: dict[str, str], workers: int) -> tuple[Server, str]:
    """One replica with its own ``CXPREDICT_HOME``; returns it and its personalize URL once ready."""
    port = bench.free_port()
    home = tmp / f"home-{name}"  # empty: the replica resolves and downloads the champions itself
    server = Server(
        name,
        [*bench.cxpredict_command(), "serve", "--port", str(port), "--host", HOST, "--workers", str(workers)],
        tmp,
        {**env, "CXPREDICT_HOME": str(home)},
        tmp / f"{name}.log",
    )
    server.wait_ready(f"http://{HOST}:{port}/readyz")
    return server, f"http://{HOST}:{port}/v1/personalize"


def stored_customer(redis_url: str) -> str:
    """A customer id the Redis online store holds."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match="cxp:g:*:row:*", count=1000):
            return key.decode().rsplit(":", 1)[1]
    finally:
        client.close()
    raise RuntimeError(f"no customer in the online store {redis_url}")


def together(hey: str, urls: list[str], body: Path, connections: int, args: argparse.Namespace) -> Result:
    """All ``urls`` loaded at once, ``connections`` split evenly; requests added up, the worst latencies kept."""
    share = max(1, connections // len(urls))
    for url in urls:
        bench.run_hey(hey, url, body, share, args.warmup, True)
    texts: list[str] = [""] * len(urls)

    def one(i: int) -> None:
        texts[i] = bench.run_hey(hey, urls[i], body, share, args.duration, True)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parts = [bench.parse_hey(text, f"replica {i}", share, args.duration) for i, text in enumerate(texts)]
    worst = {k: max((getattr(p, k) or 0.0) for p in parts) or None for k in ("p50_ms", "p99_ms", "max_ms")}
    return Result(
        target=f"{len(urls)} replica(s)",
        connections=share * len(urls),
        duration_s=args.duration,
        requests=sum(p.requests for p in parts),
        rps=sum(p.rps for p in parts),
        errors=sum(p.errors for p in parts),
        loadavg_1m=os.getloadavg()[0],
        **worst,
    )


def main() -> int:
    """Run the comparison and print one line per configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per replica (default 1)")
    parser.add_argument("--redis-db", type=int, default=13)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import psycopg
    import redis

    hey = bench.ensure_hey()
    redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    database = f"cxp_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    admin.execute(f"CREATE DATABASE {database}")
    tmp = Path(tempfile.mkdtemp(prefix="cxpredict-replica-bench-"))
    servers: list[Server] = []
    results: list[Result] = []
    loadavg_before = bench._loadavg()
    try:
        os.environ.update(
            {
                "CXPREDICT_ONLINE_STORE": redis_url,
                "CXPREDICT_DECISION_LOG": f"postgresql://postgres@127.0.0.1:5432/{database}",
                "CXPREDICT_EXPERIMENTS": str(tmp / "experiments.yaml"),
            }
        )
        env = bench.setup(tmp, args.customers)
        body = tmp / "personalize.json"
        body.write_text(json.dumps({"customer_id": stored_customer(redis_url), "context": {"channel": "email"}}))
        a, url_a = start("a", tmp, env, args.workers)
        servers.append(a)
        for c in CONNECTIONS:
            results.append(together(hey, [url_a], body, c, args))
            print(json.dumps(asdict(results[-1])), flush=True)
        b, url_b = start("b", tmp, env, args.workers)
        servers.append(b)
        for c in CONNECTIONS:
            results.append(together(hey, [url_a, url_b], body, c, args))
            print(json.dumps(asdict(results[-1])), flush=True)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()
        redis.Redis.from_url(redis_url).flushdb()
    print(f"\n{'configuration':<14} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for r in results:
        print(
            f"{r.target:<14} {r.connections:>5} {r.rps:>8.1f} {r.p50_ms or 0:>7.1f} {r.p99_ms or 0:>7.1f} {r.errors:>6}"
        )
    print(f"load average before {loadavg_before}, after {bench._loadavg()}; workers per replica {args.workers}")
    if args.json:
        report = {"machine": bench.machine(), "workers": args.workers, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
