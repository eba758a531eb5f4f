"""The MLproject entry points run the same CLI: `mlflow run . -e features` end to end (local env, no network)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd

from features.synthetic import SyntheticConfig, generate, write_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_mlflow_run_features_entry_point(tmp_path: Path) -> None:
    write_dataset(generate(SyntheticConfig(n_customers=200, seed=4)), tmp_path / "data")
    out = tmp_path / "f.parquet"
    # Other tests in this process may have left MLflow variables behind (an experiment id of another database).
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env = {
        **inherited,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    command = [str(ROOT / ".venv/bin/mlflow"), "run", str(ROOT), "-e", "features", "--env-manager", "local"]
    command += ["-P", f"data={tmp_path / 'data'}", "-P", "as_of=2024-10-01", "-P", f"out={out}"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "succeeded" in done.stderr
    frame = pd.read_parquet(out)
    assert len(frame) > 50 and "recency_days" in frame.columns
    assert out.stat().st_mode & 0o777 == 0o644
