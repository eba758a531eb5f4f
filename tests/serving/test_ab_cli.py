"""`cxpredict ab` turns every user mistake into a one-line error and exit code 2, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxpredict.cli import app


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "CXPREDICT_HOME": str(tmp_path / "home")}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ab", "start", "e1", "--model", "churn", "--variant", "champion=0.5", "--variant", "b=0.4"], "sum to 1"),
        (["ab", "start", "e1", "--model", "churn", "--variant", "champion"], "ALIAS=SHARE"),
        (["ab", "start", "e1", "--model", "magic", "--variant", "champion=1"], "--model 'magic'"),
        (
            ["ab", "start", "e1", "--model", "churn", "--variant", "champion=0.5", "--variant", "b=0.5"],
            "no alias or version 'champion'",
        ),
        (["ab", "start", "e1", "--model", "churn", "--variant", "champion=1.0"], "nothing to compare"),
        (
            ["ab", "start", "e1", "--model", "cltv", "--variant", "champion=0.9", "--holdout", "0.1"],
            "--holdout applies only to --model next_best_offer or personalize",
        ),
        (["ab", "start", "e1", "--model", "churn", "--variant", "champion=nan"], "must be a number between 0 and 1"),
        (
            ["ab", "start", "e1", "--model", "personalize", "--variant", "champion=0.5", "--holdout", "1.5"],
            "--holdout 1.5: must be a number from 0",
        ),
        (["ab", "stop", "nope"], "no experiment named 'nope'"),
        (["ab", "report", "nope"], "no experiment named 'nope'"),
        (["ab", "ingest", "missing.csv"], "missing.csv not found"),
    ],
)
def test_ab_mistakes_exit_2_with_a_clear_message(env: dict[str, str], tmp_path: Path, args, message) -> None:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert "Value error" not in result.output and "errors.pydantic.dev" not in result.output
    assert not (tmp_path / "home" / "experiments.yaml").exists()


def test_ab_list_without_experiments(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["ab", "list"], env=env)
    assert result.exit_code == 0 and "no experiments" in result.output
