"""``cxpredict demo``: synthetic data → features → three registered models → online store, in one command."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from features.data import load_frames
from features.materialize import materialize
from features.pipeline import FeatureConfig, build_features, data_start, default_as_of
from features.private_files import FILE_MODE, private_dir
from features.schema import TABLES
from features.settings import Settings
from features.synthetic import SyntheticConfig, generate, write_dataset
from training.config import TrainConfig
from training.train import TrainingDataError, TrainResult, snapshot_cutoffs, train

#: Written into every directory the demo fills, so that a later demo may overwrite it and nothing else.
MARKER = ".cxpredict-demo"


class DemoDirError(ValueError):
    """The demo's data directory holds something the demo did not write."""


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
    private_dir(path.parent)
    key = secrets.token_urlsafe(24)
    # Created owner-only (never readable by others, not even between a write and a chmod); O_EXCL: never reused.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def check_demo_dir(data_dir: Path, force: bool = False) -> None:
    """Refuse a data directory that holds files the demo did not write (unless ``force``).

    Raises:
        DemoDirError: ``data_dir`` is a file, a non-empty directory without the demo's marker, or (even with
            ``force``) holds a table as CSV that the demo writes as Parquet (training refuses a table in two files).
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise DemoDirError(f"--data {data_dir} is a file, not a directory")
    if not data_dir.exists():
        return
    clashes = sorted(f"{t}.csv" for t in TABLES if (data_dir / f"{t}.csv").exists())
    if clashes:
        raise DemoDirError(
            f"--data {data_dir} holds {', '.join(clashes)}: the demo writes those tables as Parquet, and a table in "
            "two files cannot be read. Choose another directory."
        )
    if force or (data_dir / MARKER).exists():
        return
    entries = {p.name for p in data_dir.iterdir()}
    if entries:
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise DemoDirError(
            f"--data {data_dir} already holds files without the demo's marker {MARKER} ({shown}): written by "
            "another tool, or by a demo older than the marker. The demo would overwrite them with synthetic tables. "
            "Choose another directory, or pass --force to overwrite it anyway."
        )


def check_trainable(tables: dict[str, pd.DataFrame], config: TrainConfig, data_dir: Path) -> None:
    """Fail before anything is written when the generated data has too few customers for training.

    Counts the population at the same cut-offs ``train`` will use, so that the check and training agree.

    Raises:
        TrainingDataError: a snapshot would have fewer than ``config.min_customers`` customers.
    """
    con = load_frames(tables)
    as_of = default_as_of(con)
    cuts, holdout = snapshot_cutoffs(as_of, data_start(con), config)
    feat_cfg = FeatureConfig(response_window_days=config.response_window_days)
    counts = {cut: len(build_features(con, cut, feat_cfg)) for cut in [*cuts, holdout]}
    cut, fewest = min(counts.items(), key=lambda kv: kv[1])
    if fewest < config.min_customers:
        n = tables["customers"].shape[0]
        raise TrainingDataError(
            f"--customers {n} is too few to train on: only {fewest} are active at {cut:%Y-%m-%d} (training needs "
            f"{config.min_customers}); nothing was written to {data_dir}"
        )


def run_demo(data_dir: Path, customers: int, settings: Settings, seed: int = 7, force: bool = False) -> DemoResult:
    """Generate the synthetic dataset, train and register all models, and fill the online store.

    Args:
        data_dir: Where the synthetic tables go; created when missing.
        customers: Synthetic customers to generate.
        settings: Tracking URI and home of the online store.
        seed: Seed of the generator and of training.
        force: Overwrite ``data_dir`` even when it holds files the demo did not write.

    Raises:
        DemoDirError: ``data_dir`` holds other data and ``force`` is off.
        TrainingDataError: too few customers to train on (checked before anything is written).
    """
    data_dir = Path(data_dir)
    check_demo_dir(data_dir, force)
    tables = generate(SyntheticConfig(n_customers=customers, seed=seed))
    config = TrainConfig(seed=seed)
    check_trainable(tables, config, data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    # The marker goes first: a demo interrupted while writing tables can still be re-run on its own output.
    (data_dir / MARKER).write_text("written by `cxpredict demo`; a later demo may overwrite this directory\n")
    write_dataset(tables, data_dir)
    result = train(data_dir, None, config, settings)
    n, as_of = materialize(data_dir, None, settings)
    key = ensure_demo_key(settings)
    return DemoResult(data_dir, result, n, as_of, key, settings.demo_key_file)
