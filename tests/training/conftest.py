import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from features.settings import Settings
from features.synthetic import SyntheticConfig, generate, write_dataset
from training.config import EffectLearnerParams, TrainConfig, XGBParams

AS_OF = datetime(2025, 1, 1)
ROOT = Path(__file__).resolve().parents[2]


def mlflow_run(entry: str, params: dict[str, str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``mlflow run`` of one of this project's MLproject entry points, in the project's own environment (no network).

    MLflow variables of the test process are dropped (other tests may leave an experiment id of another database
    behind); ``env`` supplies the tracking URI and anything else the run needs.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    path = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    full_env = {**inherited, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true", **env}
    command = [str(ROOT / ".venv/bin/mlflow"), "run", str(ROOT), "-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    write_dataset(generate(SyntheticConfig(n_customers=1200, seed=3)), out)
    return out


def make_settings(root: Path) -> Settings:
    return Settings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", home=root / "home")


#: Small T/X/DR-learners for tests that need a trained next-best-offer model but not its quality.
SMALL_EFFECTS = EffectLearnerParams(n_estimators=40, effect_estimators=30)


def small_config(**kw) -> TrainConfig:
    return TrainConfig(xgb=XGBParams(n_estimators=60, max_depth=3), **({"max_snapshots": 3} | kw))
