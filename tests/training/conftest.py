from datetime import datetime
from pathlib import Path

import pytest

from features.settings import Settings
from features.synthetic import SyntheticConfig, generate, write_dataset
from training.config import TrainConfig, XGBParams

AS_OF = datetime(2025, 1, 1)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    write_dataset(generate(SyntheticConfig(n_customers=1200, seed=3)), out)
    return out


def make_settings(root: Path) -> Settings:
    return Settings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", home=root / "home")


def small_config(**kw) -> TrainConfig:
    return TrainConfig(xgb=XGBParams(n_estimators=60, max_depth=3), max_snapshots=3, **kw)
