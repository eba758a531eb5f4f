"""The user's path through the CLI: demo, then predict and evaluate on what demo left behind."""

import pandas as pd
from typer.testing import CliRunner

from cxpredict.cli import app
from tests.training.conftest import mlflow_run


def test_demo_then_predict_and_evaluate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "CXPREDICT_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--customers", "700", "--data", "d"], env=env)
    assert demo.exit_code == 0, demo.output
    assert "churn: version 1 (champion)" in demo.output and "API key:" in demo.output
    assert (tmp_path / "home" / "online" / "features.sqlite").exists()
    assert (tmp_path / "home" / "api_key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "d" / ".cxpredict-demo").exists()  # a later `cxpredict demo` may overwrite d

    pred = runner.invoke(app, ["predict", "--data", "d", "--out", "p.parquet"], env=env)
    assert pred.exit_code == 0, pred.output
    frame = pd.read_parquet(tmp_path / "p.parquet")
    expected = {"customer_id", "churn_probability", "predicted_spend", "cltv", "next_best_offer"}
    assert expected <= set(frame.columns)
    assert frame.churn_probability.between(0, 1).all() and (frame.predicted_spend >= 0).all()

    ev = runner.invoke(app, ["evaluate", "--data", "d", "--as-of", "2024-09-01"], env=env)
    assert ev.exit_code == 0, ev.output
    assert "roc_auc=" in ev.output and "ece=" in ev.output and "IN-SAMPLE" in ev.output
    late = runner.invoke(app, ["evaluate", "--data", "d", "--as-of", "2024-12-01"], env=env)
    assert late.exit_code == 2 and "outcome window" in late.output

    # The MLproject entry point runs the same command inside the run `mlflow run` opened, which already holds the
    # entry point's own parameters (as_of, alias, data): evaluate must not log those keys again.
    done = mlflow_run("evaluate", {"data": str(tmp_path / "d"), "as_of": "2024-09-01"}, tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "roc_auc=" in done.stdout and "succeeded" in done.stderr


def test_train_rejects_unknown_model_name(tmp_path):
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--models", "churn,magic"])
    assert res.exit_code == 2 and "magic" in res.output


def test_train_rejects_an_unknown_offer_value(tmp_path):
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--offer-value", "margin"])
    assert res.exit_code == 2 and "offer_value" in res.output and "acceptance" in res.output
