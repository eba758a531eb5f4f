"""No customer's raw data in MLflow runs or model bundles (CONTRACT §4): train on data with an `email` column and
a rare category, then search every MLflow artifact, the tracking database and the registered bundles."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features import registry
from features.synthetic import SyntheticConfig, generate, write_dataset
from tests.training.conftest import AS_OF, SMALL_EFFECTS, make_settings, small_config
from training.train import train

#: Every customer id gets this prefix, so any trace of one is found by a byte search.
MARK = "zqcust"
RARE = "vip-zq-rare"


def _dataset(out: Path) -> pd.DataFrame:
    tables = generate(SyntheticConfig(n_customers=1200, seed=3))
    for frame in tables.values():
        if "customer_id" in frame.columns:
            frame["customer_id"] = MARK + frame["customer_id"].astype(str)
    customers = tables["customers"]
    customers["email"] = customers["customer_id"] + "@mail.example"
    # A category three customers share: too rare to be stored (it could single them out).
    customers["tier"] = np.where(np.arange(len(customers)) < 3, RARE, "standard")
    write_dataset(tables, out)
    return customers


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("privacy_run")
    customers = _dataset(root / "data")
    settings = make_settings(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow's default artifact root (./mlruns) lands here, to be searched
        result = train(root / "data", AS_OF, small_config(effect_learners=SMALL_EFFECTS), settings)
    return root, settings, result, customers


def test_email_column_is_refused_and_said_so(trained) -> None:
    root, settings, result, _ = trained
    assert {m for m, r in result.models.items() if r.version} == {"churn", "cltv", "next_best_offer"}
    client = registry.configure(settings)
    for name in ("churn", "cltv", "next_best_offer"):
        bundle, _ = registry.load_bundle(client, name, "champion", root / "cache")
        assert "attr_email" not in bundle.encoder.columns
        assert "distinct value" in bundle.encoder.dropped["attr_email"]
        assert bundle.encoder.categories["attr_tier"] == ["standard"]  # the rare value is not stored
        assert "attr_region" in bundle.encoder.categories  # common attributes are still features
        run = mlflow.get_run(client.get_model_version(name, str(result.models[name].version)).run_id)
        assert "attr_email" in run.data.params["dropped_features"].split(",")
        assert "high-cardinality" in run.data.tags["dropped_feature.attr_email"]


def test_no_customer_id_email_or_rare_value_anywhere(trained) -> None:
    root, settings, _, customers = trained
    experiment = mlflow.get_experiment_by_name("cxpredict")
    artifacts = Path(experiment.artifact_location.removeprefix("file://"))
    assert artifacts.is_dir() and any(artifacts.rglob("bundle.json")) and any(artifacts.rglob("input_example.json"))
    needles = [MARK.encode(), b"@mail.example", RARE.encode()]
    assert _files_holding(artifacts, needles) == []
    assert _files_holding(root / "cache", needles) == []
    # The tracking database (params, tags, metrics, model metadata), as raw bytes.
    assert [n for n in needles if n in (root / "mlflow.db").read_bytes()] == []
    # The search would find an id if one were there (the customers file holds them all).
    assert _files_holding(root / "data", [MARK.encode()])
    assert customers["email"].str.contains("@mail.example").all()


def test_input_example_is_synthetic_and_the_model_still_loads(trained) -> None:
    root, _, result, _ = trained
    experiment = mlflow.get_experiment_by_name("cxpredict")
    artifacts = Path(experiment.artifact_location.removeprefix("file://"))
    example = json.loads(next(artifacts.rglob("input_example.json")).read_text())
    assert "attr_email" not in example["columns"] and "customer_id" not in example["columns"]
    model = mlflow.pyfunc.load_model(f"models:/churn/{result.models['churn'].version}")
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    assert len(model.predict(frame)) == len(frame)
