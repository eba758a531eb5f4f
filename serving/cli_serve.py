"""``cxpredict serve``: resolve the champions, keep watching the registry, and run the BentoML service.

The parent process (this one) talks to MLflow; the BentoML server runs as a child process whose worker reads
only the manifest, the bundles and the online store.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from features.settings import load_settings
from serving.layout import MODELS
from serving.manifest import reload_interval, resolve_champions, watch_champions
from serving.privacy import retention_loop
from serving.startup import StartupError, preflight

log = logging.getLogger(__name__)

SERVICE = "serving.service:CxPredict"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Most worker processes started by default (each holds its own copy of the models, about 170 MB here).
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One worker per CPU core this process may run on, at most :data:`MAX_DEFAULT_WORKERS`.

    A worker's Python runs on one core at a time, so one worker leaves the others idle: on the 2-core reference
    machine two workers served 1.2-1.9x the requests per second of one at 8 connections in five benchmark runs
    (see docs/benchmarks.md). Beyond 2 cores this is not measured, hence the cap.
    """
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS))


def check_port_free(host: str, port: int) -> None:
    """Fail with a one-line message when ``host:port`` cannot be listened on (checked before anything starts).

    The probe binds the way BentoML's server (circus) does, with ``SO_REUSEADDR``: a port held only by closed
    connections of a stopped server is free to it, one another process listens on is not.

    Raises:
        StartupError: the port is in use, or the host or port cannot be bound (unknown host, no permission).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, OverflowError) as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {port} on {host} is already in use: stop what holds it or choose another --port"
                ) from exc
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve(port: int, host: str = "127.0.0.1", workers: int | None = None) -> None:
    """Serve the champions on ``host:port`` until interrupted (Ctrl-C stops everything cleanly).

    Args:
        port: TCP port.
        host: Interface to bind.
        workers: BentoML worker processes (default: :func:`default_workers`). Each holds its own models and
            decision-log writer (WAL lets them share the file); ``/metrics`` sums their ``cxpredict_*`` counters
            (see :mod:`serving.metrics`).

    Raises:
        StartupError: the port is taken, or no model, store or API key to serve with (the message says how to fix it).
        features.scoring.FeatureSetMismatch: a champion was trained on another feature set.
    """
    check_port_free(host, port)
    workers = workers or default_workers()
    settings = load_settings()
    manifest = resolve_champions(settings)
    # BentoML's process manager (circus) restarts a worker that dies, unless it believes it runs in a container
    # (these variables), where it leaves that to the orchestrator: `serve` promises the restart either way.
    inherited = {k: v for k, v in os.environ.items() if k not in ("BENTOML_CONTAINERIZED", "BENTOCLOUD_DEPLOYMENT_URL")}
    env = {
        **inherited,
        "BENTOML_DO_NOT_TRACK": "true",
        "CXPREDICT_HOME": str(Path(settings.home).resolve()),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p),
        "BENTOML_CONFIG_OPTIONS": " ".join(
            o for o in (os.environ.get("BENTOML_CONFIG_OPTIONS", ""), f"services.cxpredict.workers={workers}") if o
        ),
    }
    # Fail here, with a clear message, rather than in a worker: models, store and keys must all load.
    preflight(env, PROJECT_ROOT)
    for name in MODELS:
        entry = manifest.get(name) or {}
        if entry.get("version") is None:
            log.warning("%s: not served (%s)", name, entry.get("reason"))
    for experiment in manifest.get("experiments") or []:
        if experiment.get("error"):
            log.warning("experiment %s: not routed (%s)", experiment["name"], experiment["error"])
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_champions, args=(settings, reload_interval(), stop), name="cxpredict-champions", daemon=True
    )
    watcher.start()
    purger = threading.Thread(target=retention_loop, args=(settings, stop), name="cxpredict-retention", daemon=True)
    purger.start()
    command = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--port", str(port), "--host", host]
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    # `kill`, systemd and `docker stop` send SIGTERM to this process alone: without passing it on, the BentoML
    # server (and the port it holds) would outlive `cxpredict serve`.
    forwarding = threading.current_thread() is threading.main_thread()
    if forwarding:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    try:
        child.wait()
    except KeyboardInterrupt:
        # The terminal already sent SIGINT to the child too; make sure it is gone before returning.
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    finally:
        if forwarding:
            signal.signal(signal.SIGTERM, previous)
        stop.set()
        watcher.join(timeout=5)
    if child.returncode not in (0, -signal.SIGINT, -signal.SIGTERM, None):
        raise StartupError(f"the BentoML server exited with code {child.returncode}")
