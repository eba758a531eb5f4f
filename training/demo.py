"""``cxpredict demo``: synthetic data → features → three registered models → online store, in one command."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from features.materialize import materialize
from features.settings import Settings
from features.synthetic import SyntheticConfig, generate, write_dataset
from training.config import TrainConfig
from training.train import TrainResult, train


@dataclass
class DemoResult:
    """Where the demo left everything."""

    data_dir: Path
    train: TrainResult
    customers_in_store: int
    store_as_of: datetime
    api_key: str
    api_key_file: Path


def ensure_demo_key(settings: Settings) -> str:
    """The API key ``serve`` accepts when ``CXPREDICT_API_KEYS`` is unset (generated once, kept private)."""
    path = settings.demo_key_file
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def run_demo(data_dir: Path, customers: int, settings: Settings, seed: int = 7) -> DemoResult:
    """Generate the synthetic dataset, train and register all models, and fill the online store."""
    tables = generate(SyntheticConfig(n_customers=customers, seed=seed))
    write_dataset(tables, data_dir)
    result = train(data_dir, None, TrainConfig(seed=seed), settings)
    n, as_of = materialize(data_dir, None, settings)
    key = ensure_demo_key(settings)
    return DemoResult(data_dir, result, n, as_of, key, settings.demo_key_file)
