"""Serving speed: ``POST /v1/personalize`` of the real server against a bare one-model BentoML service.

Usage: python benchmarks/serving.py [--duration 10] [--warmup 2] [--customers 3000] [--json FILE] [--write-docs]
                                   [--keep] [--strict]

In a temporary directory: ``cxpredict demo`` (synthetic data, three registered models, online store), then
``cxpredict serve`` on a free loopback port, loaded by ``hey`` at 1, 8 and 32 connections, and the bare service
of ``benchmarks/bare_service.py`` (the churn model's ``main`` booster from the bundle that ``serve`` downloaded)
under the same load. Only one server is loaded at a time, and the bare service is loaded right after each
configuration at the same connection count, so that the machine's drift during a run affects both sides of a
ratio alike. ``hey`` comes from the Debian package and is installed with ``apt-get`` when it is not on PATH.

Prints requests/s and latency per target and connection count, the personalize/bare throughput ratio and a
pass/fail per target; ``--json`` writes the raw figures, ``--write-docs`` replaces the serving section of
``docs/benchmarks.md`` (between the ``serving-bench`` markers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
DOCS_START = "<!-- serving-bench:start -->"
DOCS_END = "<!-- serving-bench:end -->"
API_KEY = "bench-key"
CONNECTIONS = (1, 8, 32)
HOST = "127.0.0.1"
READY_TIMEOUT_S = 180.0
REPRODUCE = ".venv/bin/python benchmarks/serving.py --write-docs"
# `features` and `serving` of this checkout (the script's own directory is what Python puts on the path).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Targets for the full /v1/personalize (serving issue).
RATIO_TARGET = 1.5
P99_TARGET_MS = 20.0
MAX_TARGET_MS = 100.0
TARGET_CONNECTIONS = 8
SHADOW = "personalize+shadow"
ONE_WORKER = "personalize-1w"


@dataclass
class Result:
    """One ``hey`` run: a target at a connection count."""

    target: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: int
    status_codes: dict[str, int] = field(default_factory=dict)
    error_messages: dict[str, int] = field(default_factory=dict)
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    server_cpu_ms: float | None = None
    loadavg_1m: float | None = None
    #: For a bare run: the configuration it was measured next to (its ratio's numerator).
    paired_with: str | None = None

    @property
    def label(self) -> str:
        """The target as the tables show it."""
        return f"{self.target} (next to {self.paired_with})" if self.paired_with else self.target


@dataclass
class Target:
    """A server endpoint to load."""

    name: str
    server: Server
    url: str
    body: Path
    auth: bool
    paired_with: str | None = None


class Server:
    """A server subprocess in its own session, with its log in a file; :meth:`stop` ends all of it.

    Some of BentoML's workers start their own session, so the server's descendants are remembered while it runs
    and any that outlive the group signal are ended one by one.
    """

    def __init__(self, name: str, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._descendants: set[int] = set()
        self._stopped = False

    def _remember_descendants(self) -> None:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        todo = [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in self._descendants:
                    self._descendants.add(child)
                    todo.append(child)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server's processes (the parent and every descendant)."""
        ticks = 0
        for pid in (self.proc.pid, *self._descendants):
            try:
                text = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll ``url`` until it answers 200; fail with the log's tail when the server exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        self._remember_descendants()
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.tail()}")

    def worker_count(self) -> int:
        """BentoML worker processes among the server's descendants (known once :meth:`wait_ready` returned)."""
        count = 0
        for pid in self._descendants:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            count += b"_bentoml_impl.worker" in cmdline
        return count

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        self._log_file.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def _alive(pid: int) -> bool:
        """Whether ``pid`` runs (a zombie waiting for its parent counts as gone)."""
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return text[text.rfind(")") + 2 :].split()[0] not in ("Z", "X")

    def stop(self) -> None:
        """Ctrl-C the process group, then SIGTERM and SIGKILL whatever is left (group and known descendants)."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self._remember_descendants()
        for sig, grace_s in ((signal.SIGINT, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if self._gone():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            if sig != signal.SIGINT:
                for pid in self._descendants:
                    if self._alive(pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, sig)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and not self._gone():
                time.sleep(0.1)
        self._log_file.close()

    def _gone(self) -> bool:
        return self.proc.poll() is not None and not any(self._alive(p) for p in self._descendants)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def ensure_hey() -> str:
    """Path of ``hey``, installing the Debian package when it is missing (``apt-get update`` only if needed)."""
    found = shutil.which("hey")
    if found:
        return found
    install = ["apt-get", "install", "-y", "hey"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("hey not found: apt-get install -y hey", flush=True)
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        print("install failed: apt-get update, then again", flush=True)
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    found = shutil.which("hey")
    if not found:
        raise RuntimeError("hey is still not on PATH after installing the Debian package")
    return found


_SECS = r"([0-9.]+) secs"


def parse_hey(text: str, target: str, connections: int, duration_s: float) -> Result:
    """Figures from ``hey``'s text report (anything but a 200 counts as an error)."""

    def seconds_ms(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) * 1000.0 if m else None

    rps_match = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    percentiles = {f"p{m.group(1)}": float(m.group(2)) * 1000.0 for m in re.finditer(r"(\d+)% in " + _SECS, text)}
    status: dict[str, int] = {}
    errors_text: dict[str, int] = {}
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Status code distribution"):
            section = "status"
            continue
        if stripped.startswith("Error distribution"):
            section = "errors"
            continue
        m = re.match(r"\[(\d+)\]\s+(.*)$", stripped)
        if section == "status" and m:
            count = re.match(r"(\d+) responses", m.group(2))
            status[m.group(1)] = int(count.group(1)) if count else 0
        elif section == "errors" and m:
            errors_text[m.group(2)] = errors_text.get(m.group(2), 0) + int(m.group(1))
        elif stripped and not m:
            section = None
    requests = sum(status.values()) + sum(errors_text.values())
    errors = sum(n for code, n in status.items() if code != "200") + sum(errors_text.values())
    return Result(
        target=target,
        connections=connections,
        duration_s=duration_s,
        requests=requests,
        rps=float(rps_match.group(1)) if rps_match else 0.0,
        p50_ms=percentiles.get("p50"),
        p99_ms=percentiles.get("p99"),
        max_ms=seconds_ms(r"Slowest:\s+" + _SECS),
        errors=errors,
        status_codes=status,
        error_messages=errors_text,
        percentiles_ms=percentiles,
    )


def run_hey(hey: str, url: str, body: Path, connections: int, seconds: float, auth: bool) -> str:
    """One bounded ``hey`` run; returns its text report."""
    command = [hey, "-z", f"{seconds:g}s", "-c", str(connections), "-m", "POST", "-T", "application/json"]
    if auth:
        command += ["-H", f"Authorization: Bearer {API_KEY}"]
    command += ["-D", str(body), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return done.stdout


def load(hey: str, targets: list[Target], args: argparse.Namespace, raw_dir: Path) -> list[Result]:
    """At every connection count, a warm-up and a measured run of each target in turn."""
    results = []
    for c in CONNECTIONS:
        for t in targets:
            run_hey(hey, t.url, t.body, c, args.warmup, t.auth)
            cpu_before = t.server.cpu_seconds()
            text = run_hey(hey, t.url, t.body, c, args.duration, t.auth)
            cpu_used = t.server.cpu_seconds() - cpu_before
            suffix = f"-next-to-{t.paired_with}" if t.paired_with else ""
            (raw_dir / f"hey-{t.name}{suffix}-c{c}.txt").write_text(text)
            result = parse_hey(text, t.name, c, args.duration)
            result.paired_with = t.paired_with
            result.server_cpu_ms = 1000.0 * cpu_used / result.requests if result.requests else None
            result.loadavg_1m = os.getloadavg()[0]
            results.append(result)
            print(
                f"  {result.label:<34} c={c:<3} {result.rps:8.1f} req/s  p50 {_ms(result.p50_ms)}  "
                f"p99 {_ms(result.p99_ms)}  max {_ms(result.max_ms)}  errors {result.errors}  "
                f"server CPU {_ms(result.server_cpu_ms, 2)} ms/req  (load {_loadavg()})",
                flush=True,
            )
    return results


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def setup(tmp: Path, customers: int) -> dict[str, str]:
    """``cxpredict demo`` in ``tmp``; returns the environment every cxpredict command of the run uses."""
    env = {
        **os.environ,
        "CXPREDICT_HOME": str(tmp / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "CXPREDICT_API_KEYS": API_KEY,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(tmp / "bentoml"),
        # The benchmark's own checkout, whichever copy this file is in.
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }
    t0 = time.perf_counter()
    done = subprocess.run(
        [*cxpredict_command(), "demo", "--data", str(tmp / "data"), "--customers", str(customers)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
    )
    (tmp / "demo.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"cxpredict demo failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    print(f"setup: cxpredict demo --customers {customers} in {time.perf_counter() - t0:.0f} s", flush=True)
    return env


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run one ``cxpredict`` command of this checkout; raises with its output when it fails."""
    done = subprocess.run([*cxpredict_command(), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cxpredict {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-2000:]}")
    return done.stdout


def cxpredict_command() -> list[str]:
    """The ``cxpredict`` CLI of this checkout, run by this interpreter (the venv's console script, in effect)."""
    return [sys.executable, "-m", "cxpredict.cli"]


def a_customer(home: Path) -> str:
    """A customer id that the online store knows."""
    from features.online_store import STORE_FILE, SQLiteOnlineStore

    store_dir = home / "online"
    con = sqlite3.connect(f"file:{store_dir / STORE_FILE}?mode=ro", uri=True)
    try:
        ids = [r[0] for r in con.execute("SELECT customer_id FROM features ORDER BY customer_id LIMIT 10")]
    finally:
        con.close()
    store = SQLiteOnlineStore(store_dir)
    for cid in ids:
        if store.get(cid) is not None:
            return cid
    raise RuntimeError(f"no customer in the online store under {store_dir}")


def champion_churn_bundle(home: Path) -> Path:
    """The churn bundle ``cxpredict serve`` downloaded: ``$CXPREDICT_HOME/models/churn/<version>-<run id>/...``.

    The demo registers one churn version (the champion); with several, the newest is taken.
    """
    found = sorted(
        (home / "models" / "churn").glob("[0-9]*/**/bundle.json"),
        key=lambda p: int(p.relative_to(home / "models" / "churn").parts[0].split("-")[0]),
    )
    if not found:
        raise RuntimeError(f"no churn bundle under {home / 'models' / 'churn'}: did `cxpredict serve` start?")
    return found[-1].parent


def bare_body(home: Path, customer_id: str) -> tuple[Path, list[float]]:
    """The champion churn booster file and the customer's row encoded for it.

    Missing values are sent as 0.0 (JSON has no NaN); the value does not change the work per request.
    """
    bundle = champion_churn_bundle(home)
    meta = json.loads((bundle / "bundle.json").read_text())
    from features.kinds import open_bundle
    from features.online_store import SQLiteOnlineStore

    churn = open_bundle(bundle)
    row = SQLiteOnlineStore(home / "online").get(customer_id) or {}
    # The booster's own inputs: the encoded features and what the churn kind derives from them (BG/NBD inputs).
    encoded = churn.inputs(churn.encoder.encode_rows([row]))[0]  # type: ignore[attr-defined]
    features = [0.0 if v != v else float(v) for v in encoded.tolist()]
    if len(features) != churn.boosters["main"].num_features():
        raise RuntimeError(
            f"bare body has {len(features)} values for a booster of {churn.boosters['main'].num_features()}"
        )
    return bundle / meta["boosters"]["main"], features


def verdicts(results: list[Result], target: str = "personalize") -> dict[str, Any]:
    """Ratios per connection count and pass/fail of every target, for one personalize configuration."""
    by = {(r.target, r.connections): r for r in results if r.paired_with is None}
    bare = {r.connections: r for r in results if r.target == "bare" and r.paired_with == target}
    ratios = {c: (by[(target, c)].rps / bare[c].rps if bare[c].rps else None) for c in CONNECTIONS}
    at = by[(target, TARGET_CONNECTIONS)]
    errors = sum(r.errors for r in results if r.target == target)
    ratio = ratios[TARGET_CONNECTIONS]
    # The issue states all three targets at 8 connections (its own reference figures for the bare service are at
    # 8); the ratios at 1 and 32 connections are reported beside them, not judged.
    checks = {
        f"{target}: req/s >= {RATIO_TARGET:g}x bare at {TARGET_CONNECTIONS} connections": ratio is not None
        and ratio >= RATIO_TARGET,
        f"{target}: p99 < {P99_TARGET_MS:g} ms at {TARGET_CONNECTIONS} connections": at.p99_ms is not None
        and at.p99_ms < P99_TARGET_MS,
        f"{target}: max < {MAX_TARGET_MS:g} ms at {TARGET_CONNECTIONS} connections": at.max_ms is not None
        and at.max_ms < MAX_TARGET_MS,
        f"{target}: zero errors at every connection count": errors == 0
        and all(r.requests > 0 for r in results if r.target == target),
        # A bare side that answers errors is no baseline: its ratio would compare with failures.
        f"bare next to {target}: zero errors (a valid baseline)": all(r.errors == 0 for r in bare.values()),
    }
    return {"ratios": ratios, "checks": checks}


def shadow_cost(results: list[Result]) -> dict[str, float | None]:
    """What the shadow variant adds to the caller's latency and to the server's CPU, in percent."""
    by = {(r.target, r.connections): r for r in results}
    plain, shadow = by.get(("personalize", 1)), by.get((SHADOW, 1))
    if plain is None or shadow is None:
        return {}

    def pct(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or not a else 100.0 * (b - a) / a

    return {
        "p50_pct_c1": pct(plain.p50_ms, shadow.p50_ms),
        "p99_pct_c1": pct(plain.p99_ms, shadow.p99_ms),
        "cpu_pct_c1": pct(plain.server_cpu_ms, shadow.server_cpu_ms),
    }


def table(results: list[Result], verdicts_by: dict[str, dict[str, Any]], shadow: dict[str, float | None]) -> str:
    """The results as a Markdown table, the ratios, the shadow's cost and the target checks."""
    lines = [
        "| target | connections | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/req | load 1 min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.connections} | {r.rps:.0f} | {_ms(r.p50_ms)} | {_ms(r.p99_ms)} | {_ms(r.max_ms)} "
            f"| {r.errors} | {_ms(r.server_cpu_ms, 2)} | {_ms(r.loadavg_1m, 2)} |"
        )
    names = list(verdicts_by)
    lines += ["", "| connections | " + " | ".join(f"{n} / bare req/s" for n in names) + " |"]
    lines.append("|---:|" + "---:|" * len(names))
    for c in CONNECTIONS:
        cells = []
        for n in names:
            ratio = verdicts_by[n]["ratios"][c]
            cells.append("-" if ratio is None else f"{ratio:.2f}x")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    if shadow:
        lines += [
            "",
            f"Shadow variant ({SHADOW} vs personalize, 1 connection): p50 {_pct(shadow['p50_pct_c1'])}, "
            f"p99 {_pct(shadow['p99_pct_c1'])}, server CPU per request {_pct(shadow['cpu_pct_c1'])}.",
        ]
    lines += ["", "| target | result |", "|---|---|"]
    for verdict in verdicts_by.values():
        for name, ok in verdict["checks"].items():
            lines.append(f"| {name} | {'pass' if ok else '**fail**'} |")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0f}%"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    from importlib.metadata import version

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "bentoml": version("bentoml"),
    }
    for package in ("xgboost-cpu", "xgboost"):
        try:
            info["xgboost"] = version(package)
            break
        except Exception:
            continue
    try:
        query = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "hey"], capture_output=True, text=True)
        info["hey"] = query.stdout.strip() or None
    except OSError:
        info["hey"] = None
    return info


def docs_section(report: dict[str, Any]) -> str:
    """The serving section of ``docs/benchmarks.md`` (between the markers)."""
    m = report["machine"]
    cfg = report["config"]
    return f"""{DOCS_START}
```sh
{REPRODUCE}
```

Measured {report["date"]}: {m["cores"]} cores, Python {m["python"]}, BentoML {m["bentoml"]}, XGBoost
{m.get("xgboost")}, hey {m.get("hey")}. Load average (1/5/15 min) {report["loadavg_before"]} before the run,
{report["loadavg_after"]} after it. hey runs on the same cores as the server.

Setup, in a temporary directory: `cxpredict demo --customers {cfg["customers"]}`, then `cxpredict serve` on a
loopback port. For each target and connection count C: a {cfg["warmup_s"]:g} s warm-up, then
`hey -z {cfg["duration_s"]:g}s -c C -m POST -T application/json -H "Authorization: Bearer ..." -D body.json URL`.
Only one server is loaded at a time. The bare service is loaded right after personalize and after
personalize-1w at the same connection count (personalize c=1, bare c=1, personalize c=8, bare c=8, ...): each
ratio compares runs made seconds apart, so the machine's drift during a run affects both sides alike.

- **personalize**: `POST /v1/personalize` of `cxpredict serve` with its default workers (one per usable core,
  at most 4: {cfg["default_workers"]} here; three models, online-store lookup, churn reasons, offer ranking, one
  decision-log row per request). hey sends one fixed body,
  `{{"customer_id": "{cfg["customer_id"]}", "context": {{"channel": "email"}}}}`: every request reads and scores
  the same store row (the service caches no answers, so this only keeps that row's pages warm). In each worker,
  scoring runs on one thread beside the event loop; requests that arrive while it is busy are scored together as
  its next batch (`serving/coalesce.py`); each one still gets its own answer and decision row. A request alone in
  the worker is scored on the event loop and its decision committed there (no thread hand-offs).
- **personalize+shadow**: the same service while an experiment on `personalize` runs with a shadow variant:
  every request is also scored by the shadow's three models on a background thread and logged a second time.
- **personalize-1w**: `cxpredict serve --workers 1` (no experiment): one worker process, for comparison.
- **bare**: `benchmarks/bare_service.py`, a one-model BentoML service as BentoML's docs write it: default
  `@bentoml.service` settings, a sync `@bentoml.api` taking a pydantic body `{{"features": [...]}}` (the same
  customer's encoded row), the churn bundle's `main` booster with `inplace_predict`, the raw probability out; no
  auth, lookup, calibration, reasons or logging. It runs in the project's environment, which has uvloop and
  httptools: BentoML's uvicorn picks them for both servers.

{table(report["results"], report["verdict"]["by_configuration"], report["verdict"]["shadow_cost"])}

Server CPU ms/req: user + system CPU time of all the server's processes during the measured run, divided by the
requests answered. The CPU speed of this shared machine varies between runs (runs of this command on the same
day differed by up to 1.8x in server CPU per request), so compare the two targets within one run, not across
runs.

Targets (serving issue): personalize at least {RATIO_TARGET:g}x the bare service's requests/s, p99 under
{P99_TARGET_MS:g} ms and no request over {MAX_TARGET_MS:g} ms at {TARGET_CONNECTIONS} connections, zero errors
(anything but a 200; checked at every connection count). The ratios at the other connection counts are reported,
not judged: the issue sets its targets, and gives its reference figures for the bare service, at
{TARGET_CONNECTIONS} connections. Each figure is from a single run: re-run the command above to reproduce it (about
{_minutes(cfg):.0f} minutes). `--duration S` sets the measured seconds per run, `--json FILE` writes the raw
figures, `--keep` keeps the temporary directory with both servers' logs and hey's reports.
{DOCS_END}"""


def _minutes(cfg: dict[str, Any]) -> float:
    runs = 5 * len(cfg["connections"]) * (cfg["duration_s"] + cfg["warmup_s"])
    return (runs + 120.0) / 60.0  # + demo setup and four server starts


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replace the serving section of ``path`` (between the markers, or the whole ``## Serving`` body)."""
    text = path.read_text()
    if DOCS_START in text and DOCS_END in text:
        head, rest = text.split(DOCS_START, 1)
        _, tail = rest.split(DOCS_END, 1)
        text = head + section + tail
    else:
        m = re.search(r"^## Serving[^\n]*\n", text, flags=re.MULTILINE)
        if m is None:
            text = text.rstrip("\n") + "\n\n## Serving\n\n" + section + "\n"
        else:
            nxt = re.search(r"^## ", text[m.end() :], flags=re.MULTILINE)
            end = m.end() + nxt.start() if nxt else len(text)
            text = text[: m.end()] + "\n" + section + "\n" + ("\n" + text[end:] if nxt else "")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    """Run the benchmark; the exit status is 1 with ``--strict`` when a target fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each run (default 2)")
    parser.add_argument("--customers", type=int, default=3000, help="synthetic customers for the demo setup")
    parser.add_argument("--json", type=Path, help="write the raw figures to this file")
    parser.add_argument("--write-docs", action="store_true", help="replace the serving section of docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (printed)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args()

    hey = ensure_hey()
    loadavg_before = _loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="cxpredict-serving-bench-"))
    servers: list[Server] = []
    results: list[Result] = []
    customer_id = ""
    default_workers = 0
    try:
        print(f"work dir: {tmp}  (load average {loadavg_before})", flush=True)
        env = setup(tmp, args.customers)
        home = Path(env["CXPREDICT_HOME"])

        port = free_port()
        serve = Server(
            "cxpredict serve",
            [*cxpredict_command(), "serve", "--port", str(port), "--host", HOST],
            tmp,
            env,
            tmp / "serve.log",
        )
        servers.append(serve)
        serve.wait_ready(f"http://{HOST}:{port}/readyz")
        default_workers = serve.worker_count()
        customer_id = a_customer(home)
        body = tmp / "personalize.json"
        body.write_text(json.dumps({"customer_id": customer_id, "context": {"channel": "email"}}))
        print(f"cxpredict serve ready on port {port}; customer {customer_id}", flush=True)

        booster, features = bare_body(home, customer_id)
        bare_json = tmp / "bare.json"
        bare_json.write_text(json.dumps({"features": features}))
        bare_port = free_port()
        bare = Server(
            "bare BentoML service",
            [sys.executable, "-m", "bentoml", "serve", "benchmarks.bare_service:Bare", "--port", str(bare_port)],
            REPO,
            {**env, "BARE_BOOSTER_PATH": str(booster)},
            tmp / "bare.log",
        )
        servers.append(bare)
        bare.wait_ready(f"http://{HOST}:{bare_port}/readyz")
        print(f"bare service ready on port {bare_port}", flush=True)
        bare_url = f"http://{HOST}:{bare_port}/predict"

        def with_bare(target: Target) -> list[Target]:
            return [target, Target("bare", bare, bare_url, bare_json, False, paired_with=target.name)]

        url = f"http://{HOST}:{port}/v1/personalize"
        results += load(hey, with_bare(Target("personalize", serve, url, body, True)), args, tmp)
        serve.stop()

        # The same service with an experiment whose shadow variant is scored on every request (off the answer's
        # path), then the service with one worker process (the default is one per core).
        # The demo registers one version per model, so the shadow ("1") scores the same models as the served
        # variant ("champion"): exactly the work a real shadow adds.
        shadow_args = ("ab", "start", "bench-shadow", "--model", "personalize", "--variant", "champion=1")
        run_cli(env, tmp, *shadow_args, "--shadow", "1")
        for name, extra in ((SHADOW, []), (ONE_WORKER, ["--workers", "1"])):
            if name == ONE_WORKER:
                run_cli(env, tmp, "ab", "stop", "bench-shadow")
            port = free_port()
            server = Server(
                name,
                [*cxpredict_command(), "serve", "--port", str(port), "--host", HOST, *extra],
                tmp,
                env,
                tmp / f"{name}.log",
            )
            servers.append(server)
            server.wait_ready(f"http://{HOST}:{port}/readyz")
            print(f"{name} ready on port {port}", flush=True)
            target = Target(name, server, f"http://{HOST}:{port}/v1/personalize", body, True)
            results += load(hey, with_bare(target) if name == ONE_WORKER else [target], args, tmp)
            server.stop()
        bare.stop()
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    verdicts_by = {name: verdicts(results, name) for name in ("personalize", ONE_WORKER)}
    shadow = shadow_cost(results)
    verdict = {"by_configuration": verdicts_by, "shadow_cost": shadow}
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "loadavg_before": loadavg_before,
        "loadavg_after": _loadavg(),
        "config": {
            "customers": args.customers,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": list(CONNECTIONS),
            "customer_id": customer_id,
            "default_workers": default_workers,
        },
        "results": results,
        "verdict": verdict,
    }
    print()
    print(table(results, verdicts_by, shadow))
    print(f"\nload average before {report['loadavg_before']}, after {report['loadavg_after']}")
    if args.json:
        args.json.write_text(
            json.dumps({**report, "results": [asdict(r) for r in results]}, indent=2, default=str) + "\n"
        )
        print(f"raw figures: {args.json}")
    if args.write_docs:
        write_docs(docs_section(report))
        print(f"updated {DOCS}")
    return 1 if args.strict and not all(verdicts_by["personalize"]["checks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
