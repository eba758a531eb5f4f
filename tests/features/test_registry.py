"""``features.registry`` against a real MLflow registry on SQLite: what a version's run did not log is None."""

from __future__ import annotations

from pathlib import Path

import mlflow

from features import registry
from features.settings import Settings


def test_a_version_whose_run_logged_no_holdout_bundle_has_none(tmp_path: Path) -> None:
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", home=tmp_path / "home")
    client = registry.configure(settings)
    experiment = mlflow.create_experiment("registry-test", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_text("not a bundle", "other/readme.txt")
    client.create_registered_model("churn")
    version = client.create_model_version("churn", f"{run.info.artifact_uri}/other", run_id=run.info.run_id)
    assert registry.load_holdout_bundle(client, "churn", int(version.version), tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()  # nothing downloaded, no empty directory left behind
