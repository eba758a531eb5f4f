"""The shadow worker: a running experiment's shadow variant scores the same requests, is logged, never answered.

Served traffic only queues work here; one background thread scores what queued up together (one model call per
shadow model set) and logs it, and skips (counting) what it cannot keep up with.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from serving.answers import Item, record, score
from serving.decision_log import DecisionLog, new_decision_id
from serving.routing import Route
from serving.schemas import ExperimentInfo

log = logging.getLogger(__name__)

#: Requests whose shadow scoring may wait; beyond that the shadow skips them (counted in the metrics).
SHADOW_BACKLOG = 10_000
#: The shadow scores what queued up within this many seconds (or this many rows) in one call per model.
SHADOW_BATCH_SECONDS = 0.1
SHADOW_BATCH_ROWS = 256


class ShadowWorker:
    """Scores and logs shadow variants in the background.

    Args:
        decisions: Returns the decision log to write to (the runtime's, looked up at each write).
    """

    def __init__(self, decisions: Callable[[], DecisionLog]) -> None:
        self._decisions = decisions
        self.scored = 0
        self.dropped = 0
        self.errors = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=SHADOW_BACKLOG)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(
        self,
        items: Sequence[Item],
        routes: Sequence[Route],
        answers: Sequence[Any],
        parts: Sequence[str],
        endpoint: str,
    ) -> None:
        """Queue the items whose route's experiment has a shadow variant; never blocks."""
        jobs = [
            (items[i], answers[i]["decision_id"], route)
            for i, route in enumerate(routes)
            if route.experiment is not None and route.experiment.shadow is not None
        ]
        if not jobs:
            return
        try:
            self._queue.put_nowait((jobs, tuple(parts), endpoint))
        except queue.Full:
            # The shadow must never slow the served traffic down: when it falls behind, it skips and says so.
            self.dropped += len(jobs)
            return
        self._ensure_thread()

    def wait(self) -> None:
        """Block until every queued shadow scoring is logged (tests and shutdown)."""
        self._queue.join()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="cxpredict-shadow", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Shadow answers are never awaited, so they can wait a moment and be scored together: one model call
            # for many rows costs about as much as for one, which keeps the shadow's share of the CPU small.
            deadline = time.monotonic() + SHADOW_BATCH_SECONDS
            rows = len(batch[0][0])
            while rows < SHADOW_BATCH_ROWS:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
                rows += len(batch[-1][0])
            try:
                self._score(batch)
            except Exception:
                self.errors += rows
                log.exception("shadow scoring failed")
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _score(self, batch: Sequence[tuple[Any, tuple[str, ...], str]]) -> None:
        """Score and log queued shadow work, one model call per (shadow model set, parts)."""
        groups: dict[tuple[int, tuple[str, ...]], list[tuple[Item, str, Route, str]]] = {}
        for jobs, parts, endpoint in batch:
            for item, served_id, route in jobs:
                key = (id(route.experiment.shadow[1]), parts)  # type: ignore[union-attr]
                groups.setdefault(key, []).append((item, served_id, route, endpoint))
        now = time.time()
        records = []
        for (_, parts), entries in groups.items():
            experiment = entries[0][2].experiment
            assert experiment is not None and experiment.shadow is not None
            name, shadow_models = experiment.shadow
            outs = score(shadow_models, [entry[0].row for entry in entries], parts)
            shadow_route = Route(experiment, name, 0.0)
            versions = {p: shadow_models.versions[p] for p in parts if p in shadow_models.versions}
            for (item, served_id, _, endpoint), out in zip(entries, outs, strict=True):
                shadow_answer = {
                    "customer_id": item.customer_id,
                    **out,
                    "model_versions": versions,
                    "decision_id": new_decision_id(),
                    "as_of": item.as_of,
                    "experiment": ExperimentInfo(name=experiment.name, variant=name, holdout=False),
                    "served_decision_id": served_id,
                }
                logged = record(shadow_answer, item.row, shadow_route, endpoint, item.context, now)
                records.append({**logged, "key_name": item.key_name, "shadow": True})
        self._decisions().submit(records, background=True).result()
        self.scored += len(records)
