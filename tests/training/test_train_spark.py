"""Training through the Spark engine: the same snapshots as DuckDB, and `train --engine spark` registers models.

One Spark session on local[2] per engine use; small seeded data so the module stays within the test budget, but
Spark's JVM start alone takes tens of seconds on a loaded 2-core machine, hence ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cxpredict.cli import app
from features.data import load_data_dir
from features.engines.spark import spark_unavailable_reason
from features.pipeline import FeatureConfig, build_snapshots, data_start
from features.synthetic import SyntheticConfig, generate, write_dataset
from tests.training.conftest import AS_OF, make_settings
from training.config import TrainConfig
from training.train import offer_frame, snapshot_cutoffs, train

REASON = spark_unavailable_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

#: Spark on two local cores with few shuffle partitions: what the engine reads from the environment.
SPARK_ENV = {"CXPREDICT_SPARK_MASTER": "local[2]", "CXPREDICT_SPARK_SHUFFLE_PARTITIONS": "2"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("spark-train")
    # Ten months: 3 training snapshots + the holdout and 7 offer windows, each one Spark query or two.
    write_dataset(generate(SyntheticConfig(n_customers=300, seed=21, start=datetime(2024, 3, 1))), out)
    return out


@pytest.fixture(scope="module")
def spark_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in SPARK_ENV.items():
            mp.setenv(key, value)
        yield


#: Features are rounded to 6 decimals (features.definitions); a value whose exact result is a tie at the 7th
#: decimal (41.5659375) can round either way, as the two engines sum in different orders.
ROUNDING_STEP = 1e-6


def assert_frames_equal(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    """Same rows in the same order, same columns, every value equal.

    Floats agree to 1e-9 relative, or differ by exactly one rounding step at a tie, in at most 1 value in 1,000.
    """
    assert list(spark.columns) == list(duck.columns)
    assert len(spark) == len(duck)
    ties = 0
    for col in duck.columns:
        a, b = duck[col], spark[col]
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            x, y = a.to_numpy(float), b.to_numpy(float)
            same = np.isclose(x, y, rtol=1e-9, atol=0, equal_nan=True)
            tie = np.isclose(np.abs(x - y), ROUNDING_STEP, rtol=0, atol=1e-11)
            assert (same | tie).all(), (col, x[~(same | tie)][:5], y[~(same | tie)][:5])
            ties += int((tie & ~same).sum())
        elif a.dtype.kind == "M":
            # DuckDB and Spark hand back different datetime resolutions; the instants must agree.
            assert (a.astype("datetime64[us]") == b.astype("datetime64[us]")).all(), col
        else:
            assert a.astype(object).fillna("<null>").tolist() == b.astype(object).fillna("<null>").tolist(), col
    assert ties <= duck.size / 1000, f"{ties} values differ by one rounding step"


def test_training_frames_equal_between_engines(data_dir, spark_env) -> None:
    config = TrainConfig()
    con, _ = load_data_dir(data_dir)
    start = data_start(con)
    cuts, holdout = snapshot_cutoffs(AS_OF, start, config)
    duck_cfg = FeatureConfig()
    duck = build_snapshots(con, [*cuts, holdout], config.horizon_days, config.cltv_horizon_days, duck_cfg)
    duck_offers = offer_frame(con, AS_OF, start, config, duck_cfg)
    with FeatureConfig(engine="spark") as spark_cfg:
        spark = build_snapshots(con, [*cuts, holdout], config.horizon_days, config.cltv_horizon_days, spark_cfg)
        spark_offers = offer_frame(con, AS_OF, start, config, spark_cfg)
        assert spark_cfg.query_engine().name == "spark"
    # Enough to mean something: several snapshots, churners and stayers, offers accepted and not.
    assert duck["snapshot"].nunique() >= 3 and 0 < duck["churned"].mean() < 1
    assert len(duck_offers) > 100 and 0 < duck_offers["accepted"].mean() < 1
    assert_frames_equal(duck, spark)
    assert_frames_equal(duck_offers, spark_offers)


def test_train_engine_spark_registers_the_same_models(data_dir, spark_env, tmp_path) -> None:
    spark_settings = make_settings(tmp_path / "spark")
    env = {"MLFLOW_TRACKING_URI": spark_settings.tracking_uri, "CXPREDICT_HOME": str(spark_settings.home)}
    res = CliRunner().invoke(
        app, ["train", "--data", str(data_dir), "--as-of", f"{AS_OF:%Y-%m-%d}", "--engine", "spark"], env=env
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    client = MlflowClient(spark_settings.tracking_uri, spark_settings.tracking_uri)
    for name in ("churn", "cltv", "next_best_offer"):
        assert int(client.get_model_version_by_alias(name, "champion").version) == 1, name
    mlflow.set_tracking_uri(spark_settings.tracking_uri)
    runs = mlflow.search_runs(experiment_names=["cxpredict"], output_format="list")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.params["train.engine"] == "spark"
    spark_metrics = {r.info.run_name: r.data.metrics for r in runs if "mlflow.parentRunId" in r.data.tags}
    # The same data, the same seed, equal snapshots: DuckDB-built training fits the same models.
    duck = train(data_dir, AS_OF, TrainConfig(), make_settings(tmp_path / "duckdb"))
    for name, result in duck.models.items():
        assert result.version == 1, name
        shared = set(result.metrics) & set(spark_metrics[name])
        assert len(shared) >= 3, (name, sorted(spark_metrics[name]))
        for key in shared:
            assert spark_metrics[name][key] == pytest.approx(result.metrics[key], rel=1e-6, abs=1e-9), (name, key)
