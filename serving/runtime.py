"""What the service does per request, in plain Python: look up features, score the champions, log the decision.

This module imports neither BentoML, MLflow nor pandas: it reads the model bundles named by the serving
manifest (``$CXPREDICT_HOME/serving.json``, written by :mod:`serving.manifest` in the parent process), the
online store and the API keys. A new manifest is picked up by :meth:`Runtime.maybe_reload`: the new bundles are
loaded completely first and then swapped in with one reference assignment, so requests in flight finish on the
models they started with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from features.definitions import feature_set_version
from features.online_store import OnlineStore, merge_overrides
from features.policy import PolicyError
from features.schema import CONTROL_OFFER
from features.scoring import (
    Bundle,
    Encoder,
    FeatureSetMismatch,
    best_offer,
    risk_band,
    summary_columns,
)
from features.settings import Settings
from features.stores import safe_url
from features.stores.factory import open_online_store
from serving.contact import DETAILS, ContactGate
from serving.context_allowlist import allowed_context
from serving.decision_log import (
    DecisionLog,
    DecisionLogError,
    FeedbackReceipt,
    new_decision_id,
)
from serving.decision_log_factory import open_decision_log
from serving.experiments import HOLDOUT, assign
from serving.layout import EXPERIMENTS_ERROR, MANIFEST_FILE, MODELS, file_key
from serving.memory import Retired
from serving.startup import StartupError

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0
#: Stored feature logged with every decision as the pre-period covariate of the A/B report (CUPED).
PRE_VALUE_FEATURE = "monetary_365d"
#: Requests whose shadow scoring may wait; beyond that the shadow skips them (counted in the metrics).
SHADOW_BACKLOG = 10_000
#: The shadow scores what queued up within this many seconds (or this many rows) in one call per model.
SHADOW_BATCH_SECONDS = 0.1
SHADOW_BATCH_ROWS = 256
#: Largest magnitude a feature value may have: models read float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class ServingError(Exception):
    """A request the service cannot answer, with its HTTP status and error code.

    Args:
        status: HTTP status code.
        error: Short machine-readable code.
        detail: Human-readable explanation.
    """

    status = 400
    error = "bad_request"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class UnknownCustomer(ServingError):  # noqa: N818 (the name the design uses)
    """The id is not in the online store and no ``features`` were sent."""

    status = 404
    error = "unknown_customer"


class StoreUnavailable(ServingError):  # noqa: N818
    """The online store cannot be read (Redis down, the store file gone): a 503 the client may retry."""

    status = 503
    error = "online_store_unavailable"


class InvalidFeatures(ServingError):  # noqa: N818
    """``features`` names an unknown feature or gives a value of the wrong type."""

    status = 422
    error = "invalid_features"


@dataclass(frozen=True)
class Models:
    """One consistent set of loaded bundles: the champions, or one arm of an experiment.

    Attributes:
        bundles: Loaded bundles by model name (absent models are missing).
        versions: Registry version by model name.
        absent: Reason per model that is not available.
        encoders: Distinct encoders; models sharing an identical encoder share one encoded matrix.
        encoder_of: Index into ``encoders`` per model name.
        numeric: Known numeric input columns (for validating overrides).
        categorical: Known string attribute columns.
        key: The manifest file identity the generation was loaded from.
        experiments: Running experiments (only on the champions' generation).
        experiment_errors: Why ``experiments.yaml`` did not load and why declared experiments are not routed.
    """

    bundles: dict[str, Bundle]
    versions: dict[str, int]
    absent: dict[str, str]
    encoders: list[Encoder]
    encoder_of: dict[str, int]
    numeric: frozenset[str]
    categorical: frozenset[str]
    key: tuple[int, int, int] | None = None
    experiments: tuple[LiveExperiment, ...] = ()
    experiment_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class LiveExperiment:
    """A running experiment as the worker routes it.

    Attributes:
        name: Experiment name (salts the assignment hash).
        parts: The models the variants swap.
        arms: ``(arm, share)`` in assignment order (holdout first when it has a share).
        arm_models: The full model set each arm answers with (the holdout answers with the champions).
        shadow: The shadow variant's name and model set, if one is declared.
    """

    name: str
    parts: tuple[str, ...]
    arms: tuple[tuple[str, float], ...]
    arm_models: dict[str, Models]
    shadow: tuple[str, Models] | None = None

    def covers(self, parts: Sequence[str]) -> bool:
        """Whether a request for ``parts`` is part of this experiment."""
        return any(p in self.parts for p in parts)


@dataclass
class _StoreInfo:
    generation: str | None = None
    as_of: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_manifest(path: Path) -> dict[str, Any]:
    """The serving manifest ``{name: {"version": v, "path": dir} | {"version": None, "reason": ...}}``.

    Raises:
        StartupError: the file is missing or not valid JSON.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise StartupError(
            f"serving manifest {path} not found: start the service with `cxpredict serve`, which resolves the "
            "registry's champion models and writes it"
        ) from exc
    except json.JSONDecodeError as exc:
        raise StartupError(f"serving manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise StartupError(f"serving manifest {path} must be a JSON object")
    return data


def _load_bundle(name: str, entry: Mapping[str, Any], base: Path, cache: dict[Path, Bundle]) -> Bundle:
    path = Path(entry["path"])
    if not path.is_absolute():
        path = base / path
    if path in cache:
        return cache[path]
    try:
        bundle = Bundle.load(path)
    except FeatureSetMismatch as exc:
        raise StartupError(f"cannot serve '{name}' version {entry.get('version')}: {exc}") from exc
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
        raise StartupError(f"cannot load '{name}' bundle at {path}: {exc!r}") from exc
    if bundle.kind != name:
        raise StartupError(f"bundle at {path} is a '{bundle.kind}' model, but the manifest lists it as '{name}'")
    bundle.prepare_online()
    cache[path] = bundle
    return bundle


def _assemble(
    bundles: dict[str, Bundle], versions: dict[str, int], absent: dict[str, str], key: tuple[int, int, int] | None
) -> Models:
    encoders: list[Encoder] = []
    signatures: list[str] = []
    encoder_of: dict[str, int] = {}
    for name, bundle in bundles.items():
        signature = json.dumps(bundle.encoder.to_json(), sort_keys=True)
        if signature not in signatures:
            signatures.append(signature)
            encoders.append(bundle.encoder)
        encoder_of[name] = signatures.index(signature)
    categorical = frozenset(c for enc in encoders for c in enc.categories)
    numeric = frozenset(c for enc in encoders for c in enc.columns if c not in categorical)
    return Models(bundles, versions, absent, encoders, encoder_of, numeric, categorical, key)


def _arm_models(champions: Models, entries: Mapping[str, Any], base: Path, cache: dict[Path, Bundle]) -> Models:
    """The champions with the experiment's models replaced by one arm's versions."""
    bundles, versions, absent = dict(champions.bundles), dict(champions.versions), dict(champions.absent)
    for name, entry in entries.items():
        if name not in MODELS:
            raise StartupError(f"experiment arm names unknown model {name!r}")
        bundles[name] = _load_bundle(name, entry, base, cache)
        versions[name] = int(entry.get("version") or 0)
        absent.pop(name, None)
    return _assemble(bundles, versions, absent, champions.key)


def _load_experiments(
    manifest: Mapping[str, Any], champions: Models, base: Path, cache: dict[Path, Bundle]
) -> tuple[LiveExperiment, ...]:
    live = []
    for entry in manifest.get("experiments") or []:
        if entry.get("error"):
            log.error("experiment %r is not routed: %s", entry.get("name"), entry["error"])
            continue
        arms: list[tuple[str, float]] = []
        arm_models: dict[str, Models] = {}
        holdout = float(entry.get("holdout") or 0.0)
        if holdout > 0:
            arms.append((HOLDOUT, holdout))
            arm_models[HOLDOUT] = champions
        for arm in entry.get("arms") or []:
            arms.append((str(arm["name"]), float(arm["share"])))
            arm_models[str(arm["name"])] = _arm_models(champions, arm["models"], base, cache)
        shadow = entry.get("shadow")
        live.append(
            LiveExperiment(
                name=str(entry["name"]),
                parts=tuple(MODELS) if entry["model"] == "personalize" else (str(entry["model"]),),
                arms=tuple(arms),
                arm_models=arm_models,
                shadow=(str(shadow["name"]), _arm_models(champions, shadow["models"], base, cache)) if shadow else None,
            )
        )
    return tuple(live)


def load_models(manifest_path: Path) -> Models:
    """Load every bundle the manifest names: the champions and the arms of running experiments.

    Raises:
        StartupError: a bundle is missing, of the wrong kind or trained on another feature set, or no model at all
            is available.
    """
    manifest_path = Path(manifest_path)
    key = file_key(manifest_path)
    manifest = read_manifest(manifest_path)
    cache: dict[Path, Bundle] = {}
    bundles: dict[str, Bundle] = {}
    versions: dict[str, int] = {}
    absent: dict[str, str] = {}
    for name in MODELS:
        entry = manifest.get(name) or {}
        if not entry.get("path"):
            absent[name] = entry.get("reason") or f"no '{name}' model has the champion alias"
            continue
        bundles[name] = _load_bundle(name, entry, manifest_path.parent, cache)
        versions[name] = int(entry.get("version") or 0)
    if not bundles:
        raise StartupError(
            f"no model to serve: {manifest_path} names no champion; train first (`cxpredict train` or `cxpredict demo`)"
        )
    champions = _assemble(bundles, versions, absent, key)
    experiments = _load_experiments(manifest, champions, manifest_path.parent, cache)
    errors = [
        f"experiment {e.get('name')!r}: {e['error']}" for e in manifest.get("experiments") or [] if e.get("error")
    ]
    if manifest.get(EXPERIMENTS_ERROR):
        log.error("experiments file does not load; routing the last valid experiments: %s", manifest[EXPERIMENTS_ERROR])
        errors.insert(0, str(manifest[EXPERIMENTS_ERROR]))
    return dataclasses.replace(champions, experiments=experiments, experiment_errors=tuple(errors))


def _float(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


class Item(NamedTuple):
    """One customer to answer.

    Fields: its id, the feature row to score, the store's as-of (``None`` for a cold start), the caller's
    context and the name of the API key that asked (both logged with the decision).
    """

    customer_id: str
    row: dict[str, Any]
    as_of: str | None
    context: Mapping[str, Any]
    key_name: str | None = None


@dataclass(frozen=True)
class _Route:
    """Where one request goes: no experiment, or an experiment's arm and the share it was drawn with."""

    experiment: LiveExperiment | None
    arm: str | None
    share: float

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.experiment.name if self.experiment else None, self.arm)

    @property
    def holdout(self) -> bool:
        return self.arm == HOLDOUT

    def models(self, champions: Models) -> Models:
        if self.experiment is None or self.arm is None:
            return champions
        return self.experiment.arm_models.get(self.arm, champions)

    def info(self) -> dict[str, Any] | None:
        if self.experiment is None:
            return None
        return {"name": self.experiment.name, "variant": self.arm, "holdout": self.holdout}


def _record(
    answer: Mapping[str, Any],
    row: Mapping[str, Any],
    route: _Route,
    endpoint: str,
    context: Mapping[str, Any],
    ts: float,
) -> dict[str, Any]:
    """The decision-log record of one answer: the answer plus routing, propensity, offer shown and covariate."""
    offer = answer.get("next_best_offer")
    if offer is None:
        shown = None
    elif offer.get("holdout") or not offer.get("available") or offer.get("offer_id") is None:
        shown = CONTROL_OFFER
    else:
        shown = offer.get("offer_id")
    return {
        **answer,
        "endpoint": endpoint,
        "context": dict(context),
        "ts": ts,
        # The served policy is deterministic given the arm, so the probability of this decision is the arm's share.
        "propensity": route.share,
        "offer_id": shown,
        "pre_value": row.get(PRE_VALUE_FEATURE),
    }


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
        self.reload_errors = 0
        #: Experiment problems seen (a broken experiments.yaml, an experiment that cannot be routed), each counted
        #: once when a manifest first reports it.
        self.experiments_errors = len(self.models.experiment_errors)
        self.shadow_scored = 0
        self.shadow_dropped = 0
        self.shadow_errors = 0
        self._shadow_queue: queue.Queue[Any] = queue.Queue(maxsize=SHADOW_BACKLOG)
        self._shadow_lock = threading.Lock()
        self._shadow_thread: threading.Thread | None = None
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

    def _score(self, models: Models, rows: Sequence[Mapping[str, Any]], parts: Iterable[str]) -> list[dict[str, Any]]:
        """Score feature rows with the requested models; one encoding per distinct encoder."""
        n = len(rows)
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        matrices: dict[int, np.ndarray] = {}

        def matrix(name: str) -> np.ndarray:
            i = models.encoder_of[name]
            if i not in matrices:
                matrices[i] = models.encoders[i].encode_rows(rows)
            return matrices[i]

        churn_cache: list[np.ndarray | None] = []

        def churn_probs() -> np.ndarray | None:
            if not churn_cache:
                churn = models.bundles.get("churn")
                churn_cache.append(None if churn is None else churn.churn_probability(matrix("churn")))
            return churn_cache[0]

        for part in parts:
            bundle = models.bundles.get(part)
            if bundle is None:
                why = models.absent.get(part, "model not loaded")
                for o in out:
                    # The offer part's `reason` is a contact-policy code (CONTRACT §4): the text goes in `detail`.
                    o[part] = {"available": False, "detail" if part == "next_best_offer" else "reason": why}
                continue
            x = matrix(part)
            if part == "churn":
                probs = churn_probs()
                assert probs is not None
                cancelled = bundle.cancelled(x)
                reasons = bundle.churn_reasons(x)
                horizon = bundle.meta.get("horizon_days")
                for i, o in enumerate(out):
                    p = float(probs[i])
                    o["churn"] = {
                        "available": True,
                        "probability": p,
                        "risk_band": risk_band(p, bool(cancelled[i])),
                        "reasons": reasons[i],
                        "horizon_days": horizon,
                    }
            elif part == "cltv":
                # The churn model feeds the CLTV fallback (p_alive = 1 - churn) where BG/NBD cannot answer.
                ans = bundle.cltv_answers(x, summary_columns(rows), churn_probs())
                drivers = bundle.reasons(x)
                meta = bundle.meta
                for i, o in enumerate(out):
                    o["cltv"] = {
                        "available": True,
                        "predicted_spend": _float(ans["predicted_spend"][i]),
                        "horizon_days": meta.get("horizon_days"),
                        "value": _float(ans["value"][i]),
                        "value_horizon_days": meta.get("cltv_horizon_days"),
                        "method": meta.get("cltv_method"),
                        "historic_value": _float(ans["historic_value"][i]),
                        "p_alive": _float(ans["p_alive"][i]),
                        "expected_orders": _float(ans["expected_orders"][i]),
                        "activity_method": str(ans["activity_method"][i]),
                        "drivers": drivers[i],
                    }
            elif part == "next_best_offer":
                ranked = bundle.offer_scores(x, rows)
                method = bundle.meta.get("method")
                for i, o in enumerate(out):
                    if not ranked[i]:
                        o[part] = {
                            "available": False,
                            "offer_id": None,
                            "reason": "no_positive_value",
                            "detail": "no offer in the catalog is eligible for this customer",
                        }
                        continue
                    best = best_offer(ranked[i], bool(bundle.meta.get("has_control")))
                    o[part] = {
                        "available": True,
                        "offer_id": best["offer_id"] if best else None,
                        "expected_value": best["expected_value"] if best else 0.0,
                        "ranking": ranked[i],
                        "method": method,
                    }
                    if best is None:
                        o[part].update(reason="no_positive_value", detail=DETAILS["no_positive_value"])
        return out

    def _route(self, models: Models, customer_id: str, parts: Sequence[str]) -> _Route:
        for experiment in models.experiments:
            if experiment.covers(parts):
                arm, share = assign(experiment.name, customer_id, experiment.arms)
                return _Route(experiment, arm, share)
        return _Route(None, None, 1.0)

    def _decide(
        self, models: Models, items: Sequence[Item], parts: Sequence[str], endpoint: str
    ) -> tuple[list[dict[str, Any]], Future[None]]:
        """Route, score and log items; answers in input order.

        Returns:
            The answers and a future that completes once their decisions are durable in the log.
        """
        routes = [self._route(models, item.customer_id, parts) for item in items]
        groups: dict[tuple[str | None, str | None], list[int]] = {}
        for i, route in enumerate(routes):
            groups.setdefault(route.key, []).append(i)
        scored: list[dict[str, Any]] = [{} for _ in items]
        for indices in groups.values():
            route = routes[indices[0]]
            arm_models = route.models(models)
            # The holdout gets no offer, so its offer model is not even run.
            arm_parts = [p for p in parts if not (route.holdout and p == "next_best_offer")]
            outs = self._score(arm_models, [items[i].row for i in indices], arm_parts)
            for i, out in zip(indices, outs, strict=True):
                scored[i] = out
        if "next_best_offer" in parts:
            self.contact.apply([item.customer_id for item in items], [out.get("next_best_offer") for out in scored])
        now = time.time()
        answers: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        for (cid, row, as_of, context, key_name), route, out in zip(items, routes, scored, strict=True):
            if route.holdout and "next_best_offer" in parts:
                out["next_best_offer"] = {
                    "available": False,
                    "holdout": True,
                    "offer_id": None,
                    "reason": "holdout",
                    "detail": f"in the holdout of experiment {route.experiment.name!r}: show no offer",  # type: ignore[union-attr]
                }
            arm_models = route.models(models)
            answer = {
                "customer_id": cid,
                **{p: out[p] for p in parts},
                "model_versions": {p: arm_models.versions[p] for p in parts if p in arm_models.versions},
                "decision_id": new_decision_id(),
                "as_of": as_of,
                "experiment": route.info(),
            }
            answers.append(answer)
            records.append({**_record(answer, row, route, endpoint, context, now), "key_name": key_name})
        ack = self.decisions.submit(records)
        self._queue_shadow(items, routes, answers, parts, endpoint)
        return answers, ack

    def _queue_shadow(
        self,
        items: Sequence[Item],
        routes: Sequence[_Route],
        answers: Sequence[dict[str, Any]],
        parts: Sequence[str],
        endpoint: str,
    ) -> None:
        jobs = [
            (items[i], answers[i]["decision_id"], route)
            for i, route in enumerate(routes)
            if route.experiment is not None and route.experiment.shadow is not None
        ]
        if not jobs:
            return
        try:
            self._shadow_queue.put_nowait((jobs, tuple(parts), endpoint))
        except queue.Full:
            # The shadow must never slow the served traffic down: when it falls behind, it skips and says so.
            self.shadow_dropped += len(jobs)
            return
        self._ensure_shadow_worker()

    def _ensure_shadow_worker(self) -> None:
        with self._shadow_lock:
            if self._shadow_thread is None or not self._shadow_thread.is_alive():
                self._shadow_thread = threading.Thread(target=self._shadow_loop, name="cxpredict-shadow", daemon=True)
                self._shadow_thread.start()

    def _shadow_loop(self) -> None:
        while True:
            batch = [self._shadow_queue.get()]
            # Shadow answers are never awaited, so they can wait a moment and be scored together: one model call
            # for many rows costs about as much as for one, which keeps the shadow's share of the CPU small.
            deadline = time.monotonic() + SHADOW_BATCH_SECONDS
            rows = len(batch[0][0])
            while rows < SHADOW_BATCH_ROWS:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._shadow_queue.get(timeout=remaining))
                except queue.Empty:
                    break
                rows += len(batch[-1][0])
            try:
                self._score_shadow(batch)
            except Exception:
                self.shadow_errors += rows
                log.exception("shadow scoring failed")
            finally:
                for _ in batch:
                    self._shadow_queue.task_done()

    def _score_shadow(self, batch: Sequence[tuple[Any, tuple[str, ...], str]]) -> None:
        """Score and log queued shadow work, one model call per (shadow model set, parts)."""
        groups: dict[tuple[int, tuple[str, ...]], list[tuple[Item, str, _Route, str]]] = {}
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
            outs = self._score(shadow_models, [entry[0].row for entry in entries], parts)
            shadow_route = _Route(experiment, name, 0.0)
            versions = {p: shadow_models.versions[p] for p in parts if p in shadow_models.versions}
            for ((cid, row, as_of, context, key_name), served_id, _, endpoint), out in zip(entries, outs, strict=True):
                answer = {
                    "customer_id": cid,
                    **out,
                    "model_versions": versions,
                    "decision_id": new_decision_id(),
                    "as_of": as_of,
                    "experiment": {"name": experiment.name, "variant": name, "holdout": False},
                    "served_decision_id": served_id,
                }
                record = _record(answer, row, shadow_route, endpoint, context, now)
                records.append({**record, "key_name": key_name, "shadow": True})
        self.decisions.submit(records, background=True).result()
        self.shadow_scored += len(records)

    def wait_for_shadow(self) -> None:
        """Block until every queued shadow scoring is logged (tests and shutdown)."""
        self._shadow_queue.join()

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
                    {
                        "customer_id": cid,
                        "error": UnknownCustomer.error,
                        "detail": f"customer_id {cid!r} is unknown to the online store; score it with "
                        "POST /v1/personalize and its `features`",
                    }
                )
        return results, ack

    def _decide_apart(self, items: Sequence[Item], parts: Sequence[str]) -> tuple[list[dict[str, Any]], Future[None]]:
        """Each item decided alone; an item that fails gets a ``scoring_failed`` entry instead of failing the batch."""
        answers: list[dict[str, Any]] = []
        acks: list[Future[None]] = []
        for item in items:
            try:
                (answer,), ack = self.decide([item], parts, "personalize/batch")
            except Exception as exc:
                log.exception("customer %r could not be scored", item.customer_id)
                answer = {
                    "customer_id": item.customer_id,
                    "error": "scoring_failed",
                    "detail": f"this customer could not be scored ({type(exc).__name__}: {exc}); the others were",
                }
                ack = _done_future()
            answers.append(answer)
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
            "shadow_scored": self.shadow_scored,
            "shadow_skipped": self.shadow_dropped + self.shadow_errors,
        }

    def store_customers(self) -> int:
        """Customers in the online store generation being read."""
        return int(self._store.meta.get("customers") or 0)
