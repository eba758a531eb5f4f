"""`cxpredict demo` writes only into its own directories, and checks the data is trainable before writing."""

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxpredict.cli import app
from features.synthetic import SyntheticConfig, generate, write_dataset
from training.demo import MARKER, DemoDirError, check_demo_dir


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "CXPREDICT_HOME": str(tmp_path / "home")}


def _real_data(directory: Path) -> dict[str, bytes]:
    directory.mkdir()
    pd.DataFrame({"customer_id": ["815"], "ts": [pd.Timestamp("2024-01-01")], "amount": [10.0]}).to_parquet(
        directory / "transactions.parquet"
    )
    pd.DataFrame({"customer_id": ["815"]}).to_parquet(directory / "customers.parquet")
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_demo_refuses_a_directory_of_other_data(tmp_path, env):
    before = _real_data(tmp_path / "mine")
    res = CliRunner().invoke(app, ["demo", "--customers", "700", "--data", "mine"], env=env)
    assert res.exit_code == 2, res.output
    assert "--data mine already holds files without the demo's marker" in res.output and "--force" in res.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()} == before


def test_too_few_customers_fails_before_writing(tmp_path, env):
    res = CliRunner().invoke(app, ["demo", "--customers", "30", "--data", "new"], env=env)
    assert res.exit_code == 2 and "too few" in res.output, res.output
    assert not (tmp_path / "new").exists()
    # Even with --force, a demo that cannot train leaves someone else's files alone.
    before = _real_data(tmp_path / "mine")
    res = CliRunner().invoke(app, ["demo", "--customers", "30", "--data", "mine", "--force"], env=env)
    assert res.exit_code == 2 and "nothing was written to mine" in res.output, res.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "mine").iterdir()} == before


def test_demo_directories_may_be_reused(tmp_path):
    check_demo_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    check_demo_dir(tmp_path / "empty")
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / MARKER).write_text("")
    (marked / "transactions.parquet").write_text("")
    check_demo_dir(marked)


def test_other_directories_need_force(tmp_path):
    _real_data(tmp_path / "mine")
    with pytest.raises(DemoDirError, match="already holds"):
        check_demo_dir(tmp_path / "mine")
    check_demo_dir(tmp_path / "mine", force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(DemoDirError, match="is a file"):
        check_demo_dir(tmp_path / "file", force=True)
    # A table kept as CSV would sit beside the demo's Parquet file, which training refuses: not even --force.
    (tmp_path / "csvs").mkdir()
    (tmp_path / "csvs" / "transactions.csv").write_text("customer_id,ts,amount\n")
    with pytest.raises(DemoDirError, match=r"holds transactions\.csv"):
        check_demo_dir(tmp_path / "csvs", force=True)
    # Tables like the demo's, but not written by it (no marker): refused too.
    write_dataset(generate(SyntheticConfig(n_customers=20, seed=1)), tmp_path / "lookalike")
    with pytest.raises(DemoDirError):
        check_demo_dir(tmp_path / "lookalike")
