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
