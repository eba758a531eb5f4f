"""Client mistakes on the command line: a one-line error, exit code 2, no traceback, and nothing written."""

import socket
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_DOES_NOT_EXIST
from typer.testing import CliRunner

from cxpredict.cli import app
from features import registry

TX = "customer_id,ts,amount\na,2024-01-01,10\nb,2024-02-01,5\n"


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "transactions.csv").write_text(TX)
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "CXPREDICT_HOME": str(tmp_path / "home")}


def _fails(args: list[str], env: dict[str, str], *needles: str) -> str:
    res = CliRunner().invoke(app, args, env=env)
    assert res.exit_code == 2, (res.output, res.exception)
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, res.output
    return res.output


@pytest.mark.parametrize("value", ["", "NaT"])
def test_empty_or_missing_as_of_is_an_error(env, value):
    _fails(["features", "build", "--data", "d", "--out", "f.csv", "--as-of", value], env, "--as-of")
    _fails(["features", "materialize", "--data", "d", "--as-of", value], env, "--as-of")
    assert not Path("f.csv").exists() and not Path("home").exists()


def test_as_of_before_the_data_writes_nothing(env):
    why = ("no customer is known at 1990-01-01", "2024-01-01 to 2024-02-01")
    _fails(["features", "build", "--data", "d", "--out", "f.csv", "--as-of", "1990-01-01"], env, *why)
    _fails(["predict", "--data", "d", "--out", "p.csv", "--as-of", "1990-01-01"], env, *why)
    _fails(["features", "materialize", "--data", "d", "--as-of", "1990-01-01"], env, *why)
    assert not Path("f.csv").exists() and not Path("p.csv").exists() and not Path("home/online").exists()


def test_train_as_of_before_the_data_says_so(env):
    _fails(["train", "--data", "d", "--as-of", "1990-01-01"], env, "as-of 1990-01-01", "before the data starts")
    _fails(["train", "--data", "d", "--as-of", "2024-02-01"], env, "history too short")
    # Both refused before any MLflow run was opened: no failed, empty runs.
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_train_with_no_model_named(env):
    _fails(["train", "--data", "d", "--models", " , "], env, "--models", "churn,cltv,next_best_offer")


def test_output_paths_that_are_directories(env):
    Path("dir.csv").mkdir()
    _fails(["features", "build", "--data", "d", "--out", "dir.csv"], env, "dir.csv is a directory")
    _fails(["ab", "report", "x", "--html", "dir.csv"], env, "dir.csv is a directory")
    # An OSError the command does not foresee (a file where a directory should be) is still one line.
    Path("afile").write_text("")
    _fails(["features", "build", "--data", "d", "--out", "afile/f.csv"], env, "afile")


@pytest.mark.parametrize(
    ("alias", "needle"), [("", "not valid"), ("bad alias!", "not valid"), ("v2", "reserved"), ("latest", "reserved")]
)
def test_promote_checks_the_alias(env, alias, needle):
    _fails(["promote", "churn", "1", "--alias", alias], env, "--alias", needle)


def test_promote_registry_errors(env):
    _fails(["promote", "churn", "1"], env, "model 'churn' has no version 1")
    _fails(["promote", "churn", "1"], {**env, "MLFLOW_TRACKING_URI": "bogus://x"}, "MLflow:", "bogus://x")


class _Client:
    def __init__(self, code: int):
        self.code = code

    def get_model_version(self, name: str, version: str) -> None:
        raise MlflowException("boom", self.code)


def test_registry_promote_tells_missing_version_from_other_failures():
    with pytest.raises(ValueError, match="has no version 3"):
        registry.promote(_Client(RESOURCE_DOES_NOT_EXIST), "churn", 3)  # type: ignore[arg-type]
    with pytest.raises(MlflowException, match="cannot look up version 3 of model 'churn': boom"):
        registry.promote(_Client(INTERNAL_ERROR), "churn", 3)  # type: ignore[arg-type]


def test_serve_on_a_port_in_use(env):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        _fails(["serve", "--port", str(port)], env, f"port {port} on 127.0.0.1 is already in use")
