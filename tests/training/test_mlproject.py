"""The MLproject entry points run the same CLI: `mlflow run . -e features` end to end (local env, no network)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.synthetic import SyntheticConfig, generate, write_dataset
from tests.training.conftest import mlflow_run


def test_mlflow_run_features_entry_point(tmp_path: Path) -> None:
    write_dataset(generate(SyntheticConfig(n_customers=200, seed=4)), tmp_path / "data")
    out = tmp_path / "f.parquet"
    params = {"data": str(tmp_path / "data"), "as_of": "2024-10-01", "out": str(out)}
    done = mlflow_run("features", params, tmp_path, {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "succeeded" in done.stderr
    frame = pd.read_parquet(out)
    assert len(frame) > 50 and "recency_days" in frame.columns
    assert out.stat().st_mode & 0o777 == 0o644


def test_mlflow_run_train_entry_point_registers_three_champions_under_its_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    write_dataset(generate(SyntheticConfig(n_customers=600, seed=4)), tmp_path / "data")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri, "CXPREDICT_HOME": str(tmp_path / "home")}
    done = mlflow_run("train", {"data": str(tmp_path / "data"), "as_of": "2024-10-01"}, tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    parent = done.stdout.split("MLflow run ", 1)[1].split()[0]
    assert f"Run (ID '{parent}') succeeded" in done.stderr
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("churn", "cltv", "next_best_offer"):
        version = client.get_model_version_by_alias(name, "champion")
        run = client.get_run(version.run_id)
        # Each model is a child of the run `mlflow run` opened, with the data version and cut-off it was fit on.
        assert run.data.tags.get("mlflow.parentRunId") == parent
        assert run.data.params["as_of"].startswith("2024-10-01")
        assert len(run.data.params["data_hash"]) == 16
        assert run.data.metrics, name
