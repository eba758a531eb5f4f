"""The serving manifest: which registry version of each model the service answers with, and where its files are.

Runs in the ``cxpredict serve`` parent process (the only serving code that talks to MLflow): it resolves each
model's ``champion`` alias, downloads the bundle once into ``$CXPREDICT_HOME/models/<name>/<version>/`` and
writes ``$CXPREDICT_HOME/serving.json`` atomically. The workers only read that file (see
:meth:`serving.runtime.Runtime.maybe_reload`), so promoting a version in the registry reaches the service
without a restart and without MLflow in the worker.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from features.settings import Settings
from serving.runtime import MANIFEST_FILE, MODELS

log = logging.getLogger(__name__)

ALIAS = "champion"
DEFAULT_RELOAD_SECONDS = 10.0


def manifest_path(settings: Settings) -> Path:
    """Where the manifest lives."""
    return Path(settings.home) / MANIFEST_FILE


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file in the same directory, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _fetch(client: Any, name: str, version: int, target: Path) -> Path:
    """The bundle directory of a registered version, downloaded into ``target`` once and checked by loading it."""
    from features.scoring import META_FILE, Bundle
    from training import registry

    found = sorted(target.glob(f"**/{META_FILE}")) if target.exists() else []
    path = found[0].parent if found else registry.download_bundle(client, name, version, target)
    # Loading here makes a feature-set mismatch fail in the parent, early and with a clear message.
    Bundle.load(path)
    return path.resolve()


def _resolve(settings: Settings, client: Any, previous: dict[str, Any] | None) -> dict[str, Any]:
    from training import registry

    cache = Path(settings.home) / "models"
    manifest: dict[str, Any] = {}
    for name in MODELS:
        try:
            version = registry.resolve(client, name, ALIAS)
        except ValueError as exc:
            manifest[name] = {"version": None, "path": None, "reason": str(exc)}
            continue
        old = (previous or {}).get(name) or {}
        if old.get("version") == version and old.get("path") and Path(old["path"]).exists():
            manifest[name] = old
            continue
        manifest[name] = {"version": version, "path": str(_fetch(client, name, version, cache / name / str(version)))}
    return manifest


def resolve_champions(settings: Settings) -> dict[str, Any]:
    """Resolve every model's champion, download its bundle and write the manifest.

    Returns:
        The manifest ``{name: {"version": v, "path": dir}}``; a model without a champion has ``version`` and
        ``path`` null and a ``reason``.

    Raises:
        features.scoring.FeatureSetMismatch: a champion was trained on another feature set.
    """
    from training import registry

    client = registry.configure(settings)
    manifest = _resolve(settings, client, None)
    write_manifest(manifest_path(settings), manifest)
    return manifest


def reload_interval(environ: dict[str, str] | None = None) -> float:
    """Seconds between registry checks: ``CXPREDICT_RELOAD_SECONDS`` (default 10)."""
    env = os.environ if environ is None else environ
    try:
        return max(0.5, float(env.get("CXPREDICT_RELOAD_SECONDS", DEFAULT_RELOAD_SECONDS)))
    except ValueError:
        return DEFAULT_RELOAD_SECONDS


def watch_champions(settings: Settings, interval_s: float, stop_event: threading.Event) -> None:
    """Re-resolve the champions every ``interval_s`` seconds until ``stop_event`` is set.

    The manifest is rewritten only when a version changed. A failing check (registry down, a new champion on
    another feature set) is logged and the service keeps its current models.
    """
    from training import registry

    path = manifest_path(settings)
    client = registry.configure(settings)
    while not stop_event.wait(interval_s):
        try:
            current = json.loads(path.read_text()) if path.exists() else {}
            manifest = _resolve(settings, client, current)
            versions = {k: (v or {}).get("version") for k, v in manifest.items()}
            if versions != {k: (current.get(k) or {}).get("version") for k in MODELS}:
                write_manifest(path, manifest)
                log.info("champions changed: %s", versions)
        except Exception as exc:
            log.error("champion check failed, keeping the current models: %s", exc)
