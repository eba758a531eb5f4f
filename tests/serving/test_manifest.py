"""Champion resolution against a real (embedded SQLite) MLflow registry."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from features.kinds import open_bundle
from features.settings import load_settings
from tests.serving.conftest import build_bundles, feature_frame


def test_resolve_and_watch_champions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    from features.registry import promote
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
    run_id = manifest["churn"]["run_id"]
    assert Path(manifest["churn"]["path"]).is_relative_to(settings.home / "models" / "churn" / f"1-{run_id}")
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


def test_model_cache_is_keyed_by_run_id_and_never_reuses_a_cut_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    from features import registry as cx_registry
    from serving.manifest import resolve_champions
    from training import registry

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        {"CXPREDICT_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    )
    client = registry.configure(settings)
    registry.use_experiment()
    with mlflow.start_run():
        version = registry.log_bundle(build_bundles(tmp_path / "b")["churn"], "churn", "fsv")
        registry.assign_alias(client, "churn", version, promote=False)
    # What an earlier registry (rebuilt since, numbering from 1 again) left in the cache under the same version.
    stale = settings.home / "models" / "churn" / "1" / "artifacts" / "churn"
    stale.mkdir(parents=True)
    (stale / "bundle.json").write_text("{not this run's bundle")
    real = cx_registry.download_bundle

    def cut_short(client: object, name: str, version: int, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "half-a-file").write_bytes(b"x" * 100)
        raise OSError("connection reset by peer")

    monkeypatch.setattr(cx_registry, "download_bundle", cut_short)
    with pytest.raises(OSError, match="connection reset"):
        resolve_champions(settings)
    assert sorted(p.name for p in (settings.home / "models" / "churn").iterdir()) == ["1"]  # nothing half-done kept
    monkeypatch.setattr(cx_registry, "download_bundle", real)
    manifest = resolve_champions(settings)
    run_id = client.get_model_version("churn", "1").run_id
    assert manifest["churn"]["run_id"] == run_id and f"1-{run_id}" in manifest["churn"]["path"]
    assert open_bundle(Path(manifest["churn"]["path"])).kind == "churn"
