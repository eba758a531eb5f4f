"""MLflow's tracking and registry on a real PostgreSQL (skipped with a reason when unreachable)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

psycopg = pytest.importorskip("psycopg")
mlflow = pytest.importorskip("mlflow")

from tests.conftest import throwaway_database  # noqa: E402


@pytest.fixture
def tracking_uri() -> Iterator[str]:
    with throwaway_database("cxp_mlflow") as url:
        yield url


@pytest.mark.slow
def test_registry_alias_resolves_on_postgres(tracking_uri, tmp_path):
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("cxp", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "auc", 0.75)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("churn")
    v1 = client.create_model_version("churn", f"{run.info.artifact_uri}/model", run.info.run_id)
    v2 = client.create_model_version("churn", f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_registered_model_alias("churn", "champion", v1.version)
    assert client.get_model_version_by_alias("churn", "champion").version == v1.version
    client.set_registered_model_alias("churn", "champion", v2.version)  # a promote, seen by any other client
    other = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    assert other.get_model_version_by_alias("churn", "champion").version == v2.version
    assert other.get_run(run.info.run_id).data.metrics["auc"] == 0.75
