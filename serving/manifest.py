"""The serving manifest: which registry version of each model the service answers with, and where its files are.

Runs in the ``cxpredict serve`` parent process (the only serving code that talks to MLflow): it resolves each
model's ``champion`` alias, downloads the bundle once into ``$CXPREDICT_HOME/models/<name>/<version>-<run id>/`` and
writes ``$CXPREDICT_HOME/serving.json`` atomically. The workers only read that file (see
:meth:`serving.runtime.Runtime.maybe_reload`), so promoting a version in the registry reaches the service
without a restart and without MLflow in the worker.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from features import registry
from features.kinds import open_bundle
from features.private_files import write_private_text
from features.scoring import META_FILE
from features.settings import Settings
from serving.experiments import ExperimentError, experiments_path, load_experiments
from serving.layout import EXPERIMENTS_ERROR, MANIFEST_FILE, MODELS, file_key

log = logging.getLogger(__name__)

ALIAS = registry.CHAMPION
DEFAULT_RELOAD_SECONDS = 10.0


def manifest_path(settings: Settings) -> Path:
    """Where the manifest lives."""
    return Path(settings.home) / MANIFEST_FILE


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file in the same directory, then ``os.replace``)."""
    write_private_text(Path(path), json.dumps(manifest, indent=2, sort_keys=True))  # owner-only, like all of the home


def _fetch(client: Any, name: str, version: int, run_id: str, cache: Path) -> Path:
    """The bundle directory of a registered version, downloaded once and checked by loading it.

    The cache directory is keyed by the registry's run id as well as the version (a registry rebuilt from scratch
    numbers its versions from 1 again), and a download lands in a temporary directory renamed into place only once
    it is complete and loads: a download cut short is never mistaken for a bundle.
    """
    final = cache / name / f"{version}-{run_id}"
    if not final.exists():
        tmp = cache / name / f".{version}-{run_id}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            open_bundle(registry.download_bundle(client, name, version, tmp))  # complete and loadable first
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished the same download first: keep its copy
                if not final.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    found = sorted(final.glob(f"**/{META_FILE}"))
    if not found:
        raise FileNotFoundError(f"{final} holds no cxpredict bundle: remove it to download it again")
    path = found[0].parent
    # Loading here makes a feature-set mismatch fail in the parent, early and with a clear message.
    open_bundle(path)
    return path.resolve()


def _known_paths(previous: dict[str, Any] | None) -> dict[tuple[str, int, str], str]:
    """(model, version, run id) -> bundle path for everything the previous manifest had downloaded."""
    if not previous:
        return {}
    entries = [{**(previous.get(name) or {}), "model": name} for name in MODELS]
    for experiment in previous.get("experiments") or []:
        for arm in [*(experiment.get("arms") or []), experiment.get("shadow") or {}]:
            entries += list((arm.get("models") or {}).values())
    return {
        (e["model"], int(e["version"]), str(e.get("run_id"))): e["path"]
        for e in entries
        if e.get("version") and e.get("path") and e.get("run_id") and Path(e["path"]).exists()
    }


def _bundle_entry(
    client: Any, cache: Path, name: str, ref: str, known: dict[tuple[str, int, str], str]
) -> dict[str, Any]:
    version = registry.resolve(client, name, ref)
    run_id = str(client.get_model_version(name, str(version)).run_id)
    path = known.get((name, version, run_id))
    if path is None:
        path = str(_fetch(client, name, version, run_id, cache))
        known[(name, version, run_id)] = path
    return {"model": name, "version": version, "run_id": run_id, "path": path}


def _resolve_experiments(
    settings: Settings,
    client: Any,
    cache: Path,
    known: dict[tuple[str, int, str], str],
    previous: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The running experiments with every arm's bundles resolved and downloaded, and the file's error if any.

    An experiment whose variants do not resolve (a missing alias, a bundle on another feature set) is listed with
    an ``error`` and no arms; the service then answers with the champions and says so in its log. An
    ``experiments.yaml`` that does not load (a bad hand edit) keeps the previous manifest's experiments: switching
    everyone to the champions in the middle of a test would spoil it, and the next valid save takes over.
    """
    try:
        declared = load_experiments(experiments_path(settings))
    except ExperimentError as exc:
        kept = list((previous or {}).get("experiments") or [])
        log.error(
            "experiments file does not load, keeping the last valid experiments %s: %s",
            [e.get("name") for e in kept],
            exc,
        )
        return kept, str(exc)
    out: list[dict[str, Any]] = []
    for experiment in declared.running():
        entry: dict[str, Any] = {
            "name": experiment.name,
            "model": experiment.model,
            "holdout": experiment.holdout,
            "outcome": experiment.outcome,
            "arms": [],
            "shadow": None,
        }
        try:
            for variant in experiment.variants:
                models = {m: _bundle_entry(client, cache, m, variant.ref, known) for m in experiment.models}
                entry["arms"].append({"name": variant.ref, "share": variant.share, "models": models})
            if experiment.shadow:
                models = {m: _bundle_entry(client, cache, m, experiment.shadow, known) for m in experiment.models}
                entry["shadow"] = {"name": experiment.shadow, "models": models}
        except Exception as exc:
            log.error("experiment %r not served: %s", experiment.name, exc)
            entry = {"name": experiment.name, "model": experiment.model, "error": str(exc)}
        out.append(entry)
    return out, None


def _resolve(settings: Settings, client: Any, previous: dict[str, Any] | None) -> dict[str, Any]:
    cache = Path(settings.home) / "models"
    known = _known_paths(previous)
    manifest: dict[str, Any] = {}
    for name in MODELS:
        try:
            version = registry.resolve(client, name, ALIAS)
        except ValueError as exc:
            manifest[name] = {"version": None, "path": None, "reason": str(exc)}
            continue
        entry = _bundle_entry(client, cache, name, str(version), known)
        manifest[name] = {"version": entry["version"], "run_id": entry["run_id"], "path": entry["path"]}
    manifest["experiments"], error = _resolve_experiments(settings, client, cache, known, previous)
    if error:
        # The workers count it (cxpredict_experiments_errors_total); `cxpredict ab list` shows it.
        manifest[EXPERIMENTS_ERROR] = error
    return manifest


def resolve_champions(settings: Settings) -> dict[str, Any]:
    """Resolve every model's champion, download its bundle and write the manifest.

    Returns:
        The manifest ``{name: {"version": v, "path": dir}}``; a model without a champion has ``version`` and
        ``path`` null and a ``reason``.

    Raises:
        features.scoring.FeatureSetMismatch: a champion was trained on another feature set.
    """
    client = registry.configure(settings)
    path = manifest_path(settings)
    try:
        # A restart while experiments.yaml is broken keeps routing the experiments the last manifest had.
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = None
    manifest = _resolve(settings, client, previous if isinstance(previous, dict) else None)
    write_manifest(path, manifest)
    return manifest


def reload_interval(environ: dict[str, str] | None = None) -> float:
    """Seconds between registry checks: ``CXPREDICT_RELOAD_SECONDS`` (default 10)."""
    env = os.environ if environ is None else environ
    try:
        return max(0.5, float(env.get("CXPREDICT_RELOAD_SECONDS", DEFAULT_RELOAD_SECONDS)))
    except ValueError:
        return DEFAULT_RELOAD_SECONDS


def watch_champions(settings: Settings, interval_s: float, stop_event: threading.Event) -> None:
    """Re-resolve champions and experiments every ``interval_s`` seconds until ``stop_event`` is set.

    ``experiments.yaml`` is also checked every second, so ``cxpredict ab start/stop`` (or an edit) takes effect
    at once rather than at the next registry check. The manifest is rewritten only when something changed. A
    failing check (registry down, a new champion on another feature set) is logged and the service keeps its
    current models.
    """
    path = manifest_path(settings)
    declared = experiments_path(settings)
    client = registry.configure(settings)
    seen = file_key(declared)
    due = time.monotonic() + interval_s
    while not stop_event.wait(min(1.0, interval_s)):
        key = file_key(declared)
        if time.monotonic() < due and key == seen:
            continue
        seen, due = key, time.monotonic() + interval_s
        try:
            current = json.loads(path.read_text()) if path.exists() else {}
            manifest = _resolve(settings, client, current)
            if json.dumps(manifest, sort_keys=True) != json.dumps(current, sort_keys=True):
                write_manifest(path, manifest)
                versions = {k: (manifest.get(k) or {}).get("version") for k in MODELS}
                running = [e["name"] for e in manifest["experiments"] if "error" not in e]
                log.info("serving manifest changed: champions %s, experiments %s", versions, running)
        except Exception as exc:
            log.error("champion check failed, keeping the current models: %s", exc)
