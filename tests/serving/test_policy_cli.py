"""The issue-17 commands on the command line: client mistakes are one-line errors (exit 2) that write nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxpredict.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "transactions.csv").write_text("customer_id,ts,amount\na,2024-01-01,10\nb,2024-02-01,5\n")
    (tmp_path / "home").mkdir()
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "CXPREDICT_HOME": str(tmp_path / "home")}


def _run(args: list[str], env: dict[str, str], code: int, *needles: str) -> str:
    # Each command sets up logging to the stderr it is given, and the runner closes that stream afterwards: a
    # handler left on it would break the next command's logging (here and in later test modules).
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        res = CliRunner().invoke(app, args, env=env)
    finally:
        root.handlers[:] = before
    assert res.exit_code == code, (res.output, res.exception)
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in res.output, res.output
    return res.output


def test_target_refuses_bad_budget_and_bad_policy(env: dict[str, str], tmp_path: Path) -> None:
    _run(["target", "--data", "d", "--budget", "-5", "--out", "c.csv"], env, 2, "--budget")
    _run(["target", "--data", "d", "--budget", "5", "--out", "c.txt"], env, 2, ".parquet or .csv")
    (tmp_path / "home" / "policy.yaml").write_text("max_contacts: {count: -1}\n")
    _run(["target", "--data", "d", "--budget", "5", "--out", "c.csv"], env, 2, "policy.yaml", "max_contacts.count")
    assert not (tmp_path / "c.csv").exists()


def test_outcomes_sync_and_roi_on_an_empty_log(env: dict[str, str], tmp_path: Path) -> None:
    _run(["outcomes", "sync", "--data", "d", "--horizon-days", "0"], env, 2, "--horizon-days")
    _run(["outcomes", "sync", "--data", "d"], env, 0, "0 decisions")
    _run(["roi", "--since", "yesterday-ish"], env, 2, "--since")
    _run(["roi", "--html", str(tmp_path)], env, 2, "is a directory")
    out = _run(["roi", "--html", "r.html"], env, 0, "0 treated and 0 holdout")
    assert (tmp_path / "r.html").exists() and "HTML report" in out
