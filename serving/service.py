"""The BentoML service: CONTRACT §4's HTTP API over :class:`serving.runtime.Runtime`.

Run it with ``cxpredict serve`` (which resolves the champions and writes the manifest first) or directly with
``bentoml serve serving.service:CxPredict`` once ``$CXPREDICT_HOME/serving.json`` exists.

The routes, their errors and their OpenAPI documentation are :mod:`serving.http`'s FastAPI app, mounted at ``/v1``
with BentoML's documented ``mount_asgi_app``; ``/metrics`` is mounted beside it (BentoML's own request metrics are
off: they label series with the raw path). ``/livez``, ``/readyz`` and ``/docs.json`` are BentoML's. This class
holds what a worker process serves with: the runtime, a scoring thread, the request coalescers and the reload
watcher.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import bentoml

from features.settings import load_settings
from serving.coalesce import Coalescer
from serving.decision_log import FeedbackReceipt
from serving.errors import LogUnavailable
from serving.http import ConnectionRecycler, DenyByDefault, api, metrics_app
from serving.keys import ApiKey, KeyRing, RateLimiter
from serving.layout import ENDPOINTS
from serving.metrics import ServiceMetrics
from serving.readiness import ReadinessLog
from serving.runtime import Item, Runtime
from serving.schemas import FeedbackRequest, PersonalizeRequest

log = logging.getLogger("cxpredict.serving")

RELOAD_POLL_SECONDS = 1.0
#: Seconds after a worker swaps in new models during which it keeps its keep-alive connections (see ``settling``).
SETTLE_SECONDS = 30.0
#: How long a thread may hold the GIL while another waits for it (Python's default is 0.005).
GIL_SWITCH_SECONDS = 0.0005
#: The single-customer endpoints and the models each one answers with.
SINGLE_ENDPOINTS: dict[str, tuple[str, ...]] = ENDPOINTS


async def _logged(ack: Future[None]) -> None:
    """Wait until decisions are durable; :class:`serving.errors.LogUnavailable` if the log failed."""
    try:
        if ack.done():  # committed already: no trip through the loop's wake-up pipe
            ack.result()
        else:
            # Shielded: the commit is shared by every request scored in the same batch; one that times out (and
            # is cancelled) must not cancel it for the others.
            await asyncio.shield(asyncio.wrap_future(ack))
    except Exception as exc:
        raise LogUnavailable(f"the decision could not be logged ({type(exc).__name__}); retry the request") from exc


@bentoml.service(
    name="cxpredict",
    traffic={"timeout": 10, "concurrency": 64},
    logging={"access": {"enabled": False}},
    # BentoML's request metrics label every path a client sends; serving.http serves /metrics with bounded labels.
    metrics={"enabled": False},
    # Per-request OpenTelemetry spans are a large share of the framework's time per request (benchmarks/serving.py);
    # /v1 answers are traced in the decision log instead.
    tracing={"excluded_urls": ["/v1/"]},
    # The worker parallelises across requests, not inside one row: no OpenMP team over all cores per model call.
    envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    workers=1,
)
@bentoml.mount_asgi_app(api, path="/v1", name="api")
@bentoml.mount_asgi_app(metrics_app, path="/", name="metrics")
class CxPredict:
    """Churn, CLTV and next-best-offer answers for one customer at a time (or up to 1,000 in a batch)."""

    def __init__(self) -> None:
        settings = load_settings()
        self.keys = KeyRing(settings)
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.runtime = Runtime(settings)
        self.metrics = ServiceMetrics(SINGLE_ENDPOINTS)
        self.metrics.publish(self.runtime)
        self.readiness = ReadinessLog(log)  # probes come every second: log changes, not every probe
        #: Single-customer requests being answered right now (the event loop's thread alone updates it).
        self.in_flight = 0
        # One scoring thread: XGBoost releases the GIL, so scoring overlaps the event loop's HTTP work. A request
        # alone in the worker is scored on the event loop instead: the hand-off there and back would cost more.
        self._scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpredict-score")
        self._coalescers = {
            endpoint: Coalescer(
                functools.partial(self._decide, parts=parts, endpoint=endpoint),
                executor=self._scorer,
                inline=self._alone,
            )
            for endpoint, parts in SINGLE_ENDPOINTS.items()
        }
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="cxpredict-reload", daemon=True)
        self._watcher.start()
        log.info("cxpredict serving %s (pid %d)", self.runtime.status(), os.getpid())
        # Everything loaded so far lives as long as the worker: keep it out of every future GC pass.
        gc.collect()
        gc.freeze()
        # The scoring thread runs Python between its model calls; the event loop should not wait a whole default
        # switch interval for the GIL each time it has a request to read or answer.
        sys.setswitchinterval(GIL_SWITCH_SECONDS)

    def _alone(self, batch: int) -> bool:
        """Whether a scoring call of ``batch`` items is the only work in the worker (then it runs on the loop)."""
        return batch == 1 and self.in_flight == 1

    def _watch(self) -> None:
        while not self._stop.wait(RELOAD_POLL_SECONDS):
            try:
                self.runtime.maybe_reload()
            except Exception:  # never let the watcher die
                log.exception("model reload check failed")
            try:
                self.keys.maybe_reload()
            except Exception:
                log.exception("API keys reload check failed")
            try:
                # Counters and gauges reach /metrics within a second (scoring batches are counted at once).
                self.metrics.publish(self.runtime)
            except Exception:
                log.exception("publishing metrics failed")

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self._scorer.shutdown(wait=True)
        close = getattr(self.runtime.decisions, "close", None)
        if close is not None:
            close()

    def __is_ready__(self) -> bool:
        """Ready while the runtime holds a model and can read the online store and write the decision log."""
        if not self.runtime.models.bundles:
            return False
        problems = self.runtime.problems()
        self.readiness.report(problems)
        return not problems

    def _decide(self, items: list[Item], parts: tuple[str, ...], endpoint: str) -> list[tuple[Any, Future[None]]]:
        answers, logged = self.runtime.decide(items, parts, endpoint)
        self.metrics.batch(endpoint, len(items))
        return [(answer, logged) for answer in answers]

    # --- what serving.http's routes call (serving.http.Backend) ---------------------------------------------

    def authenticate(self, header: str | None) -> ApiKey | None:
        """The accepted key an ``Authorization`` header carries, or None."""
        return self.keys.authenticate(header)

    def admit(self, key: ApiKey) -> float:
        """Take one request from the key's rate limit: 0 when admitted, else the seconds to wait."""
        return self.limiter.admit(key.name)

    async def single(self, request: PersonalizeRequest, endpoint: str, key_name: str | None = None) -> Any:
        """The answer of ``endpoint`` for one customer, once its decision is logged.

        Raises:
            serving.errors.UnknownCustomer: unknown id and no features.
            serving.errors.InvalidFeatures: features the models do not take.
            serving.errors.LogUnavailable: the decision could not be logged.
        """
        item = self.runtime.prepare(request.customer_id, request.context, request.features, key_name)
        self.in_flight += 1
        try:
            # Requests that arrive while the scoring thread is busy are scored together next (serving.coalesce).
            answer, logged = await self._coalescers[endpoint].submit(item)
        finally:
            self.in_flight -= 1
        await _logged(logged)
        return answer

    async def batch(self, customer_ids: Sequence[str], key_name: str | None = None) -> list[Any]:
        """Answers for up to 1,000 known customers in request order, once logged (unknown ids: error entries)."""
        # On the scoring thread: a thousand ids take a while, and the event loop keeps serving meanwhile.
        loop = asyncio.get_running_loop()
        decide = functools.partial(self.runtime.decide_many, list(customer_ids), key_name=key_name)
        results, logged = await loop.run_in_executor(self._scorer, decide)
        await _logged(logged)
        return results

    async def feedback(self, request: FeedbackRequest) -> FeedbackReceipt:
        """Record feedback; the log's writer thread does the (short) write, awaited off the event loop."""
        try:
            return await asyncio.to_thread(self.runtime.feedback, request.decision_id, request.outcome, request.value)
        except Exception as exc:  # the log is unusable: the client may retry (feedback is idempotent)
            log.exception("feedback could not be recorded")
            raise LogUnavailable(f"the feedback could not be recorded ({type(exc).__name__}); retry") from exc

    def settling(self) -> bool:
        """Whether this worker swapped in new models within :data:`SETTLE_SECONDS`.

        Each worker reloads on its own, seconds apart: a connection moved from a worker that already serves a
        promoted model to one that does not yet would see the old version again, so none is recycled meanwhile.
        """
        return time.monotonic() - self.runtime.swapped_at < SETTLE_SECONDS

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request of a ``/v1`` route."""
        self.metrics.request(route, status, seconds)


# Default-deny in front of everything the service serves (BentoML's documented middleware seam).
CxPredict.add_asgi_middleware(DenyByDefault)
# Keep-alive connections spread over the workers again (see ConnectionRecycler).
CxPredict.add_asgi_middleware(ConnectionRecycler)
