"""Champion resolution against a real (embedded SQLite) MLflow registry."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from features.settings import load_settings
from tests.serving.conftest import build_bundles, feature_frame


def test_resolve_and_watch_champions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    from cxpredict.registry import promote
    from serving.manifest import resolve_champions, watch_champions
    from serving.runtime import Runtime
    from training import registry

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        {"CXPREDICT_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    )
    client = registry.configure(settings)
    # MLflow keeps the active experiment per process: select ours in this database, as `train` does.
    registry.use_experiment()
    bundles = build_bundles(tmp_path / "b1")
    with mlflow.start_run():
        for name in ("churn", "cltv"):
            version = registry.log_bundle(bundles[name], name, "fsv")
            registry.assign_alias(client, name, version, promote=False)

    manifest = resolve_champions(settings)
    assert manifest["churn"]["version"] == 1 and manifest["cltv"]["version"] == 1
    assert manifest["next_best_offer"]["version"] is None and "champion" in manifest["next_best_offer"]["reason"]
    assert Path(manifest["churn"]["path"]).is_relative_to(settings.home / "models" / "churn" / "1")
    assert json.loads((settings.home / "serving.json").read_text()) == manifest
    assert (Path(manifest["churn"]["path"]) / "bundle.json").exists()

    stop = threading.Event()
    watcher = threading.Thread(target=watch_champions, args=(settings, 0.5, stop), daemon=True)
    watcher.start()
    try:
        mtime = (settings.home / "serving.json").stat().st_mtime_ns
        time.sleep(1.2)  # nothing changed: the manifest is not rewritten
        assert (settings.home / "serving.json").stat().st_mtime_ns == mtime
        with mlflow.start_run():
            version = registry.log_bundle(build_bundles(tmp_path / "b2", seed=2)["churn"], "churn", "fsv")
        promote(client, "churn", version)
        deadline = time.monotonic() + 20
        while json.loads((settings.home / "serving.json").read_text())["churn"]["version"] != 2:
            assert time.monotonic() < deadline, "watcher did not pick up the new champion"
            time.sleep(0.2)
    finally:
        stop.set()
        watcher.join(timeout=10)
    (settings.home / "online").mkdir(parents=True)
    frame = feature_frame(3)
    frame.insert(0, "customer_id", ["a", "b", "c"])
    from features.definitions import feature_set_version
    from features.online_store import write_store

    write_store(settings.home / "online", frame, __import__("datetime").datetime(2024, 1, 1), feature_set_version())
    (settings.home / "api_key").write_text("k")
    runtime = Runtime(settings)
    assert runtime.models.versions == {"churn": 2, "cltv": 1}
