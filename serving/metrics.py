"""The service's own Prometheus series, correct whichever worker process answers the scrape.

BentoML runs ``prometheus_client`` in multiprocess mode: every worker writes its series to files in a shared
directory, and ``/metrics`` merges them (counters summed over workers; each gauge by its ``multiprocess_mode``).
Series written here therefore cover all workers. The runtime itself knows nothing of Prometheus: it keeps plain
totals, and :meth:`ServiceMetrics.publish` turns their growth into counter increments.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from serving.runtime import MODELS, Runtime

#: Latency buckets of the request histogram (seconds): the service answers in milliseconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The ``cxpredict_*`` series of one worker process.

    Build it in the worker (after BentoML has pointed ``PROMETHEUS_MULTIPROC_DIR`` at its directory), never at
    import time: ``prometheus_client`` chooses where values live when it is first imported.

    Args:
        endpoints: The single-customer endpoints whose coalesced batches are counted.
    """

    def __init__(self, endpoints: Iterable[str]) -> None:
        import prometheus_client as prom

        # registry=None: in multiprocess mode the values are read from the files, and a second service instance
        # in one process (tests) must not collide with the first in the default registry.
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return prom.Counter(name, doc, labels, registry=None)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            # livemax: the value of the live workers (equal, except for a moment while they reload one by one).
            return prom.Gauge(name, doc, labels, registry=None, multiprocess_mode="livemax")

        self.requests = counter(
            "cxpredict_coalesced_requests", "Single-customer requests answered, by endpoint.", ("endpoint",)
        )
        self.calls = counter(
            "cxpredict_coalesced_calls",
            "Scoring calls that answered them (requests / calls = mean batch).",
            ("endpoint",),
        )
        # One child per endpoint, made once: present from the start at 0 (so rates over them are defined before the
        # first request), and no label lookup on the scoring path.
        self._per_endpoint = {e: (self.requests.labels(e), self.calls.labels(e)) for e in endpoints}
        self._totals: dict[str, Any] = {
            "reloads": counter("cxpredict_model_reloads", "Model generations swapped in since start."),
            "reload_errors": counter("cxpredict_model_reload_errors", "Manifests that failed to load."),
            "experiments_errors": counter(
                "cxpredict_experiments_errors",
                "Experiment problems in new manifests: experiments.yaml did not load (the last valid experiments "
                "stay routed) or a declared experiment cannot be routed. Each worker counts each problem once, "
                "so the sum over workers is problems x workers.",
            ),
            "shadow_scored": counter("cxpredict_shadow_decisions", "Shadow-variant decisions scored and logged."),
            "shadow_skipped": counter(
                "cxpredict_shadow_skipped", "Requests the shadow variant skipped (backlog full) or failed on."
            ),
        }
        self._published = dict.fromkeys(self._totals, 0)
        self.model_version = gauge(
            "cxpredict_model_version", "Registry version of the model being served (0 = absent).", ("model",)
        )
        self.experiments = gauge("cxpredict_experiments_running", "Experiments routing traffic.")
        self.store_customers = gauge(
            "cxpredict_online_store_customers", "Customers in the current online store generation."
        )
        self.http_requests = counter(
            "cxpredict_http_requests", "Requests answered, by /v1 route and status.", ("route", "status")
        )
        self.http_seconds = prom.Histogram(
            "cxpredict_http_request_duration_seconds",
            "Time from a /v1 request's arrival at the API to its answer, by route.",
            ("route",),
            registry=None,
            buckets=HTTP_BUCKETS,
        )
        self._lock = threading.Lock()

    def batch(self, endpoint: str, size: int) -> None:
        """Count one scoring call that answered ``size`` requests of ``endpoint``."""
        requests, calls = self._per_endpoint[endpoint]
        requests.inc(size)
        calls.inc()

    def request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request of a ``/v1`` route (a fixed route name, never a path a client chose)."""
        self.http_requests.labels(route, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)

    def publish(self, runtime: Runtime) -> None:
        """Bring the series up to date with ``runtime``'s totals and state (cheap; call it often)."""
        totals = runtime.totals()
        with self._lock:
            for name, counter in self._totals.items():
                grown = totals[name] - self._published[name]
                if grown > 0:
                    counter.inc(grown)
                    self._published[name] = totals[name]
            versions = runtime.models.versions
            for name in MODELS:
                self.model_version.labels(name).set(versions.get(name, 0))
            self.experiments.set(len(runtime.models.experiments))
            self.store_customers.set(runtime.store_customers())
