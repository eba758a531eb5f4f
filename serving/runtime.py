"""What the service does per request, in plain Python: look up features, route, score, log the decision.

This module imports neither BentoML, MLflow nor pandas. It ties together the jobs that live in their own modules:
model generations and their reload (:mod:`serving.generations`), routing to experiment arms
(:mod:`serving.routing`), scoring and answers (:mod:`serving.answers`) and the shadow worker
(:mod:`serving.shadow`); here are the online store, the validation of overrides, the contact policy and the
decision log. Exceptions say what went wrong (:mod:`serving.errors`); the HTTP layer maps them to statuses.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.definitions import feature_set_version
from features.kinds import NEXT_BEST_OFFER
from features.online_store import OnlineStore, merge_overrides
from features.policy import PolicyError
from features.settings import Settings
from features.stores import safe_url
from features.stores.factory import open_online_store
from serving.answers import Item, answer, record, score
from serving.contact import ContactGate
from serving.context_allowlist import allowed_context
from serving.decision_log import DecisionLog, DecisionLogError, FeedbackReceipt
from serving.decision_log_factory import open_decision_log
from serving.errors import UNKNOWN_CUSTOMER, InvalidFeatures, StoreUnavailable, UnknownCustomer
from serving.generations import LiveExperiment, Models, load_models, read_manifest
from serving.layout import MANIFEST_FILE, MODELS, file_key
from serving.memory import Retired
from serving.routing import route
from serving.schemas import BatchItemError, PersonalizeResponse
from serving.shadow import ShadowWorker
from serving.startup import StartupError

__all__ = [
    "MODELS",
    "InvalidFeatures",
    "Item",
    "LiveExperiment",
    "Models",
    "Runtime",
    "StartupError",
    "StoreUnavailable",
    "UnknownCustomer",
    "load_models",
    "read_manifest",
]

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0
#: Largest magnitude a feature value may have: models read float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class _StoreInfo:
    generation: str | None = None
    as_of: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _done_future() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


def _all_done(futures: Sequence[Future[None]]) -> Future[None]:
    """A future that completes once all ``futures`` have (with the first error, if any)."""
    combined: Future[None] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def one_done(future: Future[None]) -> None:
        error = future.exception()
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        try:
            if error is not None:
                combined.set_exception(error)
            elif last:
                combined.set_result(None)
        except InvalidStateError:  # an earlier error already settled it
            pass

    if not futures:
        combined.set_result(None)
    for future in futures:
        future.add_done_callback(one_done)
    return combined


class Runtime:
    """Everything one worker needs to answer requests.

    Args:
        settings: Locations and keys.
        decision_log: Where decisions go (default: SQLite under ``settings.home``).
        manifest_path: Serving manifest (default ``settings.home / serving.json``).

    Raises:
        StartupError: models, store or keys are missing or inconsistent (the message says how to fix it).
    """

    def __init__(
        self, settings: Settings, decision_log: DecisionLog | None = None, manifest_path: Path | None = None
    ) -> None:
        self.settings = settings
        self.manifest_path = Path(manifest_path or settings.home / MANIFEST_FILE)
        self.models: Models = load_models(self.manifest_path)
        self.store: OnlineStore = open_online_store(settings)
        # Named in errors and logs: a Redis URL without its password.
        self._store_path = (
            safe_url(settings.online_store_url) if settings.online_store_url else str(Path(settings.online_store_dir))
        )
        self._store = _StoreInfo()
        self._refresh_store(strict=True)
        try:
            self.decisions: DecisionLog = decision_log or open_decision_log(settings)
        except DecisionLogError as exc:
            raise StartupError(str(exc)) from exc
        try:
            self.contact = ContactGate(settings.home, self.decisions)
        except PolicyError as exc:
            raise StartupError(str(exc)) from exc
        self.reloads = 0
        #: When (``time.monotonic()``) this worker last swapped in new models; never: minus infinity.
        self.swapped_at = -math.inf
        self.reload_errors = 0
        #: Experiment problems seen (a broken experiments.yaml, an experiment that cannot be routed), each counted
        #: once when a manifest first reports it.
        self.experiments_errors = len(self.models.experiment_errors)
        self.shadow = ShadowWorker(lambda: self.decisions)
        self._last_check = time.monotonic()
        self._reload_lock = threading.Lock()
        #: Swapped-out model generations: their memory goes back to the OS once no request holds them.
        self.retired = Retired()

    # --- lifecycle ---------------------------------------------------------------------------------------
    def _refresh_store(self, strict: bool = False) -> None:
        generation = self.store.generation()
        if generation is None:
            if strict:
                raise StartupError(
                    f"online store {self._store_path} not found: run `cxpredict features materialize` "
                    "(or `cxpredict demo`)"
                )
            return
        if generation == self._store.generation:
            return
        meta = self.store.metadata()
        if meta.get("feature_set_version") != feature_set_version():
            message = (
                f"online store {self._store_path} holds feature set {meta.get('feature_set_version')}, but this code "
                f"computes {feature_set_version()}: run `cxpredict features materialize` again"
            )
            if strict:
                raise StartupError(message)
            log.error("%s", message)
        self._store = _StoreInfo(generation=generation, as_of=meta.get("as_of"), meta=meta)

    def maybe_reload(self, force: bool = False) -> bool:
        """Pick up a new manifest (and store generation); checks the files at most once per second.

        A manifest that fails to load is logged and skipped; the current models stay in service.

        Returns:
            Whether new models were swapped in.
        """
        now = time.monotonic()
        if not force and now - self._last_check < RELOAD_CHECK_SECONDS:
            return False
        if not self._reload_lock.acquire(blocking=False):
            return False
        try:
            self._last_check = now
            self.retired.release()
            try:
                self._refresh_store()
            except Exception:  # a half-written store must not stop the service
                log.exception("could not read the online store metadata")
            key = file_key(self.manifest_path)
            if key is None or key == self.models.key:
                return False
            try:
                models = load_models(self.manifest_path)
            except Exception as exc:
                self.reload_errors += 1
                log.error("keeping models %s: new manifest does not load: %s", self.models.versions, exc)
                # Remember the bad file so it is not retried every second; a rewrite changes the key.
                self.models = dataclasses.replace(self.models, key=key)
                return False
            old = self.models.versions
            self.experiments_errors += len(set(models.experiment_errors) - set(self.models.experiment_errors))
            self.retired.retire(self.models)
            self.models = models  # one reference swap: in-flight requests keep their own `models`
            self.reloads += 1
            self.swapped_at = time.monotonic()
            log.info("serving new models %s (were %s)", models.versions, old)
            return True
        finally:
            self._reload_lock.release()

    # --- health ------------------------------------------------------------------------------------------
    @staticmethod
    def _read_store(read: Any, *args: Any) -> Any:
        try:
            return read(*args)
        except Exception as exc:  # Redis down or the store file gone: the client may retry, it did nothing wrong
            log.warning("online store read failed: %r", exc)
            raise StoreUnavailable(f"the online store cannot be read ({type(exc).__name__}); retry later") from exc

    def problems(self) -> list[str]:
        """Why the service cannot answer right now (empty when it can): the online store and the decision log."""
        found = []
        try:
            if self.store.generation() is None:
                found.append("online store: holds no generation")
        except Exception as exc:
            found.append(f"online store: {type(exc).__name__}: {exc}")
        check = getattr(self.decisions, "problem", None)
        issue = check() if check is not None else None
        if issue:
            found.append(f"decision log: {issue}")
        return found

    # --- scoring -----------------------------------------------------------------------------------------
    def _validate(self, models: Models, overrides: Mapping[str, Any]) -> None:
        unknown = sorted(k for k in overrides if k not in models.numeric and k not in models.categorical)
        if unknown:
            raise InvalidFeatures(
                f"unknown feature(s) {unknown}: `features` may only name model inputs "
                f"({len(models.numeric) + len(models.categorical)} known, e.g. recency_days, frequency_total)"
            )
        flags = sorted(k for k, v in overrides.items() if isinstance(v, bool))
        if flags:
            raise InvalidFeatures(
                f"feature(s) {flags} are true/false: send a number (or a string for an attribute) or null"
            )
        wrong = sorted(k for k, v in overrides.items() if k in models.numeric and isinstance(v, str))
        if wrong:
            raise InvalidFeatures(f"feature(s) {wrong} are numeric: send a number or null, not a string")
        huge = sorted(k for k, v in overrides.items() if isinstance(v, int | float) and not abs(v) <= FLOAT32_MAX)
        if huge:
            raise InvalidFeatures(f"feature(s) {huge} are out of range (finite numbers up to {FLOAT32_MAX:.3g})")

    def _decide(
        self, models: Models, items: Sequence[Item], parts: Sequence[str], endpoint: str
    ) -> tuple[list[PersonalizeResponse], Future[None]]:
        """Route, score and log items; answers in input order.

        Returns:
            The answers and a future that completes once their decisions are durable in the log.
        """
        routes = [route(models, item.customer_id, parts) for item in items]
        groups: dict[tuple[str | None, str | None], list[int]] = {}
        for i, r in enumerate(routes):
            groups.setdefault(r.key, []).append(i)
        offers = NEXT_BEST_OFFER.name in parts
        scored: list[dict[str, Any]] = [{} for _ in items]
        for indices in groups.values():
            first = routes[indices[0]]
            # The holdout gets no offer, so its offer model is not even run.
            arm_parts = [p for p in parts if not (first.holdout and p == NEXT_BEST_OFFER.name)]
            outs = score(first.models(models), [items[i].row for i in indices], arm_parts)
            for i, out in zip(indices, outs, strict=True):
                scored[i] = out
        if offers:
            self.contact.apply([item.customer_id for item in items], [out.get(NEXT_BEST_OFFER.name) for out in scored])
        now = time.time()
        answers: list[PersonalizeResponse] = []
        records: list[dict[str, Any]] = []
        for item, r, out in zip(items, routes, scored, strict=True):
            if r.holdout and offers:
                out[NEXT_BEST_OFFER.name] = NEXT_BEST_OFFER.held_out(r.experiment.name)  # type: ignore[union-attr]
            one = answer(item, out, parts, r.models(models), r)
            answers.append(one)
            records.append({**record(one, item.row, r, endpoint, item.context, now), "key_name": item.key_name})
        ack = self.decisions.submit(records)
        self.shadow.submit(items, routes, answers, parts, endpoint)
        return answers, ack

    def wait_for_shadow(self) -> None:
        """Block until every queued shadow scoring is logged (tests and shutdown)."""
        self.shadow.wait()

    def prepare(
        self,
        customer_id: str,
        context: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        key_name: str | None = None,
    ) -> Item:
        """Look up one customer and merge ``overrides`` into its row: the :class:`Item` :meth:`decide` answers.

        Raises:
            UnknownCustomer: the id is not stored and no ``overrides`` were given.
            InvalidFeatures: ``overrides`` names unknown features or has wrong value types.
            StoreUnavailable: the online store cannot be read.
        """
        if overrides:
            self._validate(self.models, overrides)
        stored = self._read_store(self.store.get, customer_id)
        if stored is None and overrides is not None and not overrides:
            raise UnknownCustomer(
                f"customer_id {customer_id!r} is unknown to the online store and `features` is empty: a cold start is "
                "scored from the features sent, so send at least one (e.g. recency_days, frequency_total)"
            )
        if stored is None and not overrides:
            raise UnknownCustomer(
                f"customer_id {customer_id!r} is unknown to the online store; send its `features` in the request "
                "to score it anyway (cold start)"
            )
        row = merge_overrides(stored, overrides)
        as_of = self._store.as_of if stored is not None else None
        logged = allowed_context(context, self.settings.context_keys)  # keys outside the allowlist are dropped
        return Item(customer_id, row, as_of, logged, key_name)

    def decide(
        self,
        items: Sequence[Item],
        parts: Sequence[str] = MODELS,
        endpoint: str = "personalize",
    ) -> tuple[list[dict[str, Any]], Future[None]]:
        """Answers for prepared items in input order, without waiting for the log.

        Scoring many items together costs little more than one (one model call per model and arm), so the service
        hands over every request that reached it at the same time. Each answer depends only on its own item.

        Args:
            items: Prepared items (:meth:`prepare`).
            parts: The models to answer with.
            endpoint: The endpoint logged with each decision.

        Returns:
            The answers and a future that completes once all their decisions are durable; the caller must not send
            an answer before that.
        """
        if not items:
            return [], _done_future()
        return self._decide(self.models, items, parts, endpoint)

    def personalize(
        self,
        customer_id: str,
        context: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        parts: Sequence[str] = MODELS,
        endpoint: str = "personalize",
    ) -> dict[str, Any]:
        """Answer for one customer (the stored row merged with ``overrides``), returned once it is logged.

        Raises:
            UnknownCustomer: the id is not stored and no ``overrides`` were given.
            InvalidFeatures: ``overrides`` names unknown features or has wrong value types.
        """
        answers, ack = self.decide([self.prepare(customer_id, context, overrides)], parts, endpoint)
        ack.result()
        return answers[0]

    def decide_many(
        self, customer_ids: Sequence[str], parts: Sequence[str] = MODELS, key_name: str | None = None
    ) -> tuple[list[dict[str, Any]], Future[None]]:
        """Answers for known customers in request order (unknown ids get an ``unknown_customer`` entry).

        Returns:
            The answers and a future that completes once their decisions are durable.
        """
        stored = self._read_store(self.store.get_many, customer_ids)
        as_of = self._store.as_of
        items = [Item(cid, stored[cid], as_of, {}, key_name) for cid in customer_ids if cid in stored]
        try:
            answers, ack = self.decide(items, parts, "personalize/batch")
        except Exception:  # nothing was logged: find the rows that fail alone, answer the others
            answers, ack = self._decide_apart(items, parts)
        known = iter(answers)
        results: list[dict[str, Any]] = []
        for cid in customer_ids:
            if cid in stored:
                results.append(next(known))
            else:
                results.append(
                    BatchItemError(
                        customer_id=cid,
                        error=UNKNOWN_CUSTOMER,
                        detail=f"customer_id {cid!r} is unknown to the online store; score it with "
                        "POST /v1/personalize and its `features`",
                    )
                )
        return results, ack

    def _decide_apart(self, items: Sequence[Item], parts: Sequence[str]) -> tuple[list[dict[str, Any]], Future[None]]:
        """Each item decided alone; an item that fails gets a ``scoring_failed`` entry instead of failing the batch."""
        answers: list[dict[str, Any]] = []
        acks: list[Future[None]] = []
        for item in items:
            try:
                (one,), ack = self.decide([item], parts, "personalize/batch")
            except Exception as exc:
                log.exception("customer %r could not be scored", item.customer_id)
                one = BatchItemError(
                    customer_id=item.customer_id,
                    error="scoring_failed",
                    detail=f"this customer could not be scored ({type(exc).__name__}: {exc}); the others were",
                )
                ack = _done_future()
            answers.append(one)
            acks.append(ack)
        return answers, _all_done(acks)

    def personalize_many(self, customer_ids: Sequence[str], parts: Sequence[str] = MODELS) -> list[dict[str, Any]]:
        """Answers for known customers in request order, returned once logged."""
        results, ack = self.decide_many(customer_ids, parts)
        ack.result()
        return results

    def feedback(self, decision_id: str, outcome: str, value: float | None) -> FeedbackReceipt:
        """Record feedback: whether the decision id is known, and whether an earlier record of the outcome stands."""
        return self.decisions.add_feedback(decision_id, outcome, value)

    # --- observability -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Loaded versions, absent models and the store generation (for logs and metrics)."""
        return {
            "model_versions": dict(self.models.versions),
            "absent": dict(self.models.absent),
            "store_as_of": self._store.as_of,
            "store_customers": self._store.meta.get("customers"),
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "pid": os.getpid(),
        }

    def totals(self) -> dict[str, int]:
        """Event counts since start (the service publishes them as Prometheus counters)."""
        return {
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "experiments_errors": self.experiments_errors,
            "shadow_scored": self.shadow.scored,
            "shadow_skipped": self.shadow.dropped + self.shadow.errors,
        }

    def store_customers(self) -> int:
        """Customers in the online store generation being read."""
        return int(self._store.meta.get("customers") or 0)
