"""Model generations: the bundles the serving manifest names, loaded completely, and the experiments' arms.

A generation (:class:`Models`) is immutable: :meth:`serving.runtime.Runtime.maybe_reload` loads a new one from a
rewritten manifest and swaps it in with one reference assignment, so requests in flight finish on the models they
started with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.kinds import KIND_NAMES, open_bundle
from features.scoring import Bundle, Encoder, FeatureSetMismatch
from serving.experiments import HOLDOUT, TARGET_MODELS
from serving.layout import EXPERIMENTS_ERROR, file_key
from serving.startup import StartupError

log = logging.getLogger(__name__)


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
        bundle = open_bundle(path)
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
        if name not in KIND_NAMES:
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
                parts=TARGET_MODELS[str(entry["model"])],
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
    for name in KIND_NAMES:
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
