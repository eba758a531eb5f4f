"""What the service does per request, in plain Python: look up features, score the champions, log the decision.

This module imports neither BentoML, MLflow nor pandas: it reads the model bundles named by the serving
manifest (``$CXPREDICT_HOME/serving.json``, written by :mod:`serving.manifest` in the parent process), the
online store and the API keys. A new manifest is picked up by :meth:`Runtime.maybe_reload`: the new bundles are
loaded completely first and then swapped in with one reference assignment, so requests in flight finish on the
models they started with.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.definitions import feature_set_version
from features.online_store import STORE_FILE, SQLiteOnlineStore, merge_overrides
from features.scoring import Bundle, Encoder, FeatureSetMismatch, risk_band
from features.settings import Settings
from serving.decision_log import DECISIONS_FILE, DecisionLog, SQLiteDecisionLog

log = logging.getLogger(__name__)

MANIFEST_FILE = "serving.json"
MODELS: tuple[str, ...] = ("churn", "cltv", "next_best_offer")
RELOAD_CHECK_SECONDS = 1.0
#: Largest magnitude a feature value may have: models read float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class StartupError(RuntimeError):
    """The service cannot start: the message says what is missing and how to fix it."""


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


class InvalidFeatures(ServingError):  # noqa: N818
    """``features`` names an unknown feature or gives a value of the wrong type."""

    status = 422
    error = "invalid_features"


@dataclass(frozen=True)
class Models:
    """One consistent generation of loaded champions (swapped as a whole).

    Attributes:
        bundles: Loaded bundles by model name (absent models are missing).
        versions: Registry version by model name.
        absent: Reason per model that is not available.
        encoders: Distinct encoders; models sharing an identical encoder share one encoded matrix.
        encoder_of: Index into ``encoders`` per model name.
        numeric: Known numeric input columns (for validating overrides).
        categorical: Known string attribute columns.
        key: The manifest file identity the generation was loaded from.
    """

    bundles: dict[str, Bundle]
    versions: dict[str, int]
    absent: dict[str, str]
    encoders: list[Encoder]
    encoder_of: dict[str, int]
    numeric: frozenset[str]
    categorical: frozenset[str]
    key: tuple[int, int, int] | None = None


@dataclass
class _StoreInfo:
    inode: int | None = None
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


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def load_models(manifest_path: Path) -> Models:
    """Load every bundle the manifest names.

    Raises:
        StartupError: a bundle is missing, of the wrong kind or trained on another feature set, or no model at all
            is available.
    """
    manifest_path = Path(manifest_path)
    key = _file_key(manifest_path)
    manifest = read_manifest(manifest_path)
    bundles: dict[str, Bundle] = {}
    versions: dict[str, int] = {}
    absent: dict[str, str] = {}
    for name in MODELS:
        entry = manifest.get(name) or {}
        if not entry.get("path"):
            absent[name] = entry.get("reason") or f"no '{name}' model has the champion alias"
            continue
        path = Path(entry["path"])
        if not path.is_absolute():
            path = manifest_path.parent / path
        try:
            bundle = Bundle.load(path)
        except FeatureSetMismatch as exc:
            raise StartupError(f"cannot serve '{name}' version {entry.get('version')}: {exc}") from exc
        except (FileNotFoundError, KeyError, json.JSONDecodeError) as exc:
            raise StartupError(f"cannot load '{name}' bundle at {path}: {exc!r}") from exc
        if bundle.kind != name:
            raise StartupError(f"bundle at {path} is a '{bundle.kind}' model, but the manifest lists it as '{name}'")
        bundles[name] = bundle
        versions[name] = int(entry.get("version") or 0)
    if not bundles:
        raise StartupError(
            f"no model to serve: {manifest_path} names no champion; train first (`cxpredict train` or `cxpredict demo`)"
        )
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


def load_api_keys(settings: Settings) -> tuple[str, ...]:
    """The accepted keys: ``CXPREDICT_API_KEYS``, else the key ``cxpredict demo`` stored.

    Raises:
        StartupError: neither exists.
    """
    if settings.api_keys:
        return settings.api_keys
    try:
        stored = settings.demo_key_file.read_text().strip()
    except FileNotFoundError:
        stored = ""
    if not stored:
        raise StartupError(
            f"no API key configured: set CXPREDICT_API_KEYS (comma-separated) or run `cxpredict demo`, which stores "
            f"one in {settings.demo_key_file}"
        )
    return (stored,)


def _float(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


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
        self.keys: tuple[bytes, ...] = tuple(k.encode() for k in load_api_keys(settings))
        self.models: Models = load_models(self.manifest_path)
        self.store = SQLiteOnlineStore(settings.online_store_dir)
        self._store_path = Path(settings.online_store_dir) / STORE_FILE
        self._store = _StoreInfo()
        self._refresh_store(strict=True)
        self.decisions: DecisionLog = decision_log or SQLiteDecisionLog(Path(settings.home) / DECISIONS_FILE)
        self.reloads = 0
        self.reload_errors = 0
        self._last_check = time.monotonic()
        self._reload_lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------------
    def _refresh_store(self, strict: bool = False) -> None:
        key = _file_key(self._store_path)
        if key is None:
            if strict:
                raise StartupError(
                    f"online store {self._store_path} not found: run `cxpredict features materialize` "
                    "(or `cxpredict demo`)"
                )
            return
        if key[0] == self._store.inode:
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
        self._store = _StoreInfo(inode=key[0], as_of=meta.get("as_of"), meta=meta)

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
            try:
                self._refresh_store()
            except Exception:  # a half-written store must not stop the service
                log.exception("could not read the online store metadata")
            key = _file_key(self.manifest_path)
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
            self.models = models  # one reference swap: in-flight requests keep their own `models`
            self.reloads += 1
            log.info("serving new models %s (were %s)", models.versions, old)
            return True
        finally:
            self._reload_lock.release()

    # --- auth --------------------------------------------------------------------------------------------
    def check_key(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries an accepted bearer key (constant-time comparison)."""
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        candidate = token.strip().encode()
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(candidate, key)
        return ok

    # --- scoring -----------------------------------------------------------------------------------------
    def _validate(self, models: Models, overrides: Mapping[str, Any]) -> None:
        unknown = sorted(k for k in overrides if k not in models.numeric and k not in models.categorical)
        if unknown:
            raise InvalidFeatures(
                f"unknown feature(s) {unknown}: `features` may only name model inputs "
                f"({len(models.numeric) + len(models.categorical)} known, e.g. recency_days, frequency_total)"
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

        for part in parts:
            bundle = models.bundles.get(part)
            if bundle is None:
                for o in out:
                    o[part] = {"available": False, "reason": models.absent.get(part, "model not loaded")}
                continue
            x = matrix(part)
            if part == "churn":
                probs = bundle.churn_probability(x)
                reasons = bundle.churn_reasons(x)
                horizon = bundle.meta.get("horizon_days")
                for i, o in enumerate(out):
                    p = float(probs[i])
                    o["churn"] = {
                        "available": True,
                        "probability": p,
                        "risk_band": risk_band(p),
                        "reasons": reasons[i],
                        "horizon_days": horizon,
                    }
            elif part == "cltv":
                spend, value = bundle.spend(x)
                meta = bundle.meta
                for i, o in enumerate(out):
                    o["cltv"] = {
                        "available": True,
                        "predicted_spend": _float(spend[i]),
                        "horizon_days": meta.get("horizon_days"),
                        "value": _float(value[i]),
                        "value_horizon_days": meta.get("cltv_horizon_days"),
                        "method": meta.get("cltv_method"),
                    }
            elif part == "next_best_offer":
                ranked = bundle.offer_scores(x, rows)
                method = bundle.meta.get("method")
                for i, o in enumerate(out):
                    if not ranked[i]:
                        o[part] = {
                            "available": False,
                            "reason": "no offer in the catalog is eligible for this customer",
                        }
                        continue
                    best = ranked[i][0]
                    o[part] = {
                        "available": True,
                        "offer_id": best["offer_id"],
                        "expected_value": best["expected_value"],
                        "ranking": ranked[i],
                        "method": method,
                    }
        return out

    def _answer(
        self, models: Models, customer_id: str, scored: dict[str, Any], parts: Sequence[str], as_of: str | None
    ) -> dict[str, Any]:
        return {
            "customer_id": customer_id,
            **scored,
            "model_versions": {p: models.versions[p] for p in parts if p in models.versions},
            "decision_id": uuid.uuid4().hex,
            "as_of": as_of,
            "experiment": None,
        }

    def personalize(
        self,
        customer_id: str,
        context: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        parts: Sequence[str] = MODELS,
        endpoint: str = "personalize",
    ) -> dict[str, Any]:
        """Answer for one customer: the stored row merged with ``overrides``, scored by the requested models.

        Raises:
            UnknownCustomer: the id is not stored and no ``overrides`` were given.
            InvalidFeatures: ``overrides`` names unknown features or has wrong value types.
        """
        models = self.models
        if overrides:
            self._validate(models, overrides)
        stored = self.store.get(customer_id)
        if stored is None and not overrides:
            raise UnknownCustomer(
                f"customer_id {customer_id!r} is unknown to the online store; send its `features` in the request "
                "to score it anyway (cold start)"
            )
        row = merge_overrides(stored, overrides)
        scored = self._score(models, [row], parts)[0]
        answer = self._answer(models, customer_id, scored, parts, self._store.as_of if stored is not None else None)
        self.decisions.record({**answer, "endpoint": endpoint, "context": dict(context or {}), "ts": time.time()})
        return answer

    def personalize_many(self, customer_ids: Sequence[str], parts: Sequence[str] = MODELS) -> list[dict[str, Any]]:
        """Answers for known customers in request order; unknown ids get an ``unknown_customer`` entry."""
        models = self.models
        stored = self.store.get_many(customer_ids)
        known = [cid for cid in customer_ids if cid in stored]
        scored = iter(self._score(models, [stored[cid] for cid in known], parts)) if known else iter(())
        as_of = self._store.as_of
        results: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        now = time.time()
        for cid in customer_ids:
            if cid not in stored:
                results.append(
                    {
                        "customer_id": cid,
                        "error": UnknownCustomer.error,
                        "detail": f"customer_id {cid!r} is unknown to the online store; score it with "
                        "POST /v1/personalize and its `features`",
                    }
                )
                continue
            answer = self._answer(models, cid, next(scored), parts, as_of)
            results.append(answer)
            decisions.append({**answer, "endpoint": "personalize/batch", "context": {}, "ts": now})
        if decisions:
            self.decisions.record_many(decisions)
        return results

    def feedback(self, decision_id: str, outcome: str, value: float | None) -> bool:
        """Record feedback; False when the decision id is unknown."""
        return self.decisions.record_feedback(decision_id, outcome, value)

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

    def prometheus(self) -> str:
        """Service-specific metrics in Prometheus text format (appended to BentoML's ``/metrics``)."""
        lines = [
            "# HELP cxpredict_model_version Registry version of the model being served (0 = absent).",
            "# TYPE cxpredict_model_version gauge",
        ]
        for name in MODELS:
            lines.append(f'cxpredict_model_version{{model="{name}"}} {self.models.versions.get(name, 0)}')
        lines += [
            "# HELP cxpredict_model_reloads_total Model generations swapped in since start.",
            "# TYPE cxpredict_model_reloads_total counter",
            f"cxpredict_model_reloads_total {self.reloads}",
            "# HELP cxpredict_model_reload_errors_total Manifests that failed to load.",
            "# TYPE cxpredict_model_reload_errors_total counter",
            f"cxpredict_model_reload_errors_total {self.reload_errors}",
            "# HELP cxpredict_online_store_customers Customers in the current online store generation.",
            "# TYPE cxpredict_online_store_customers gauge",
            f"cxpredict_online_store_customers {self._store.meta.get('customers') or 0}",
        ]
        return "\n".join(lines) + "\n"
