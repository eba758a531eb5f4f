"""A/B reports: terminal text and the self-contained, atomically written HTML file."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving import ab_report as report
from serving.ab_report import SRM_WARNING, format_text, write_html
from serving.ab_stats import ExperimentResult, analyze
from tests.serving.logged import record

SHARES = {"champion": 0.45, "challenger-v7": 0.45, "holdout": 0.10}


def make_units(sizes: dict[str, int], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for arm, n in sizes.items():
        pre = rng.gamma(2.0, 10.0, n)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"{arm}-{i}" for i in range(n)],
                    "variant": [arm] * n,
                    "first_ts": 1.7e9 + rng.uniform(0, 7 * 86400, n),
                    "decisions": rng.integers(1, 4, n),
                    "converted": (rng.random(n) < (0.14 if arm == "challenger-v7" else 0.1)).astype(int),
                    "value": pre + rng.normal(0, 5, n),
                    "pre_value": pre,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def balanced() -> tuple[pd.DataFrame, ExperimentResult]:
    units = make_units({"champion": 900, "challenger-v7": 905, "holdout": 195})
    return units, analyze(units, SHARES, "champion")


@pytest.fixture(scope="module")
def skewed() -> tuple[pd.DataFrame, ExperimentResult]:
    units = make_units({"champion": 1200, "challenger-v7": 700, "holdout": 200}, seed=1)
    return units, analyze(units, SHARES, "champion")


def test_format_text_balanced(balanced: tuple[pd.DataFrame, ExperimentResult]) -> None:
    _, result = balanced
    assert not result.srm.mismatch
    text = format_text(result, "churn-model-ab")
    assert "churn-model-ab" in text
    for arm in SHARES:
        assert arm in text
    assert "challenger-v7 vs champion" in text
    assert "holdout vs champion" in text
    assert "95% CI" in text
    assert "p-value" in text
    assert "P(better)" in text
    assert "CUPED" in text
    assert "variance reduction" in text
    assert "SAMPLE RATIO MISMATCH" not in text
    assert "SRM check: OK" in text
    # The table shows the observed customer counts.
    assert "905" in text and "195" in text


def test_format_text_warns_on_srm(skewed: tuple[pd.DataFrame, ExperimentResult]) -> None:
    _, result = skewed
    assert result.srm.mismatch
    text = format_text(result, "churn-model-ab")
    assert "SAMPLE RATIO MISMATCH — do not trust the comparison" in text
    assert SRM_WARNING in text.splitlines()[-1]
    assert "SRM check: OK" not in text


def test_format_text_with_an_empty_arm() -> None:
    units = make_units({"champion": 50, "challenger-v7": 40})
    result = analyze(units, SHARES, "champion")
    text = format_text(result, "x")
    assert "holdout" in text
    assert "n/a" in text
    assert "not computed" in text


def test_format_text_shows_small_sample_caveat() -> None:
    units = make_units({"champion": 40, "challenger-v7": 40, "holdout": 3})
    text = format_text(analyze(units, SHARES, "champion"), "x")
    assert "note: " in text
    assert "unreliable" in text


def test_write_html(tmp_path: Path, balanced: tuple[pd.DataFrame, ExperimentResult]) -> None:
    units, result = balanced
    target = tmp_path / "reports" / "nested" / "ab.html"
    name = "<script>alert(1)</script> & co"
    assert write_html(result, units, target, name) == target
    doc = target.read_text(encoding="utf-8")
    assert doc.startswith("<!DOCTYPE html>")
    assert doc.count('<img src="data:image/png;base64,') >= 2
    for arm in SHARES:
        assert arm in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in doc
    assert "<script>" not in doc
    assert "CUPED" in doc
    assert "SAMPLE RATIO MISMATCH" not in doc
    assert sorted(p.name for p in target.parent.iterdir()) == ["ab.html"]
    assert (target.stat().st_mode & 0o777) == 0o644


def test_write_html_replaces_and_flags_srm(tmp_path: Path, skewed: tuple[pd.DataFrame, ExperimentResult]) -> None:
    units, result = skewed
    target = tmp_path / "ab.html"
    target.write_text("old report", encoding="utf-8")
    write_html(result, units, target, "exp")
    doc = target.read_text(encoding="utf-8")
    assert "old report" not in doc
    assert "SAMPLE RATIO MISMATCH — do not trust the comparison" in doc
    assert "srm-bad" in doc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ab.html"]


def test_failed_write_leaves_nothing(tmp_path: Path, balanced: tuple[pd.DataFrame, ExperimentResult]) -> None:
    units, result = balanced
    target = tmp_path / "ab.html"
    target.mkdir()
    with pytest.raises(OSError):
        write_html(result, units, target, "exp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ab.html"]
    assert target.is_dir()
    assert list(target.iterdir()) == []


def test_write_html_rejects_bad_units(tmp_path: Path, balanced: tuple[pd.DataFrame, ExperimentResult]) -> None:
    units, result = balanced
    with pytest.raises(ValueError, match="first_ts"):
        write_html(result, units.drop(columns=["first_ts"]), tmp_path / "ab.html", "exp")
    assert list(tmp_path.iterdir()) == []


def test_matplotlib_is_not_touched_at_import() -> None:
    # Checked on the source rather than in a fresh interpreter (which costs seconds of imports): no module-level
    # statement may import matplotlib or select a backend.
    tree = ast.parse(Path(report.__file__).read_text(encoding="utf-8"))

    def check(node: ast.AST) -> None:
        # Function bodies run only when called; everything else (class bodies included) runs at import.
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("matplotlib") for a in node.names), ast.unparse(node)
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("matplotlib"), ast.unparse(node)
        if isinstance(node, ast.Call):
            assert ".use(" not in ast.unparse(node), ast.unparse(node)
        for child in ast.iter_child_nodes(node):
            check(child)

    check(tree)


def test_write_html_keeps_the_global_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, balanced: tuple[pd.DataFrame, ExperimentResult]
) -> None:
    import matplotlib

    units, result = balanced

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("write_html switched the process-wide matplotlib backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    before = dict.__getitem__(matplotlib.rcParams, "backend")
    had_pyplot = "matplotlib.pyplot" in sys.modules
    write_html(result, units, tmp_path / "r.html", "e")
    assert dict.__getitem__(matplotlib.rcParams, "backend") == before
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


def test_values_too_large_to_average_are_not_compared_and_never_print_nan_or_inf(tmp_path: Path) -> None:
    import warnings

    from features.settings import load_settings
    from serving import ab
    from serving.experiments import parse_variant, start_experiment

    settings = load_settings({"CXPREDICT_HOME": str(tmp_path)})
    start_experiment(tmp_path / "experiments.yaml", "e1", "churn", [parse_variant(s) for s in ("a=0.5", "b=0.5")])
    log = ab.decision_log(settings)
    rows = [
        {
            "decision_id": f"d{i}",
            "customer_id": f"c{i % 40}",
            "model_versions": {"churn": 1},
            "experiment": {"name": "e1", "variant": "a" if i % 2 else "b"},
            "pre_value": float(i),
        }
        for i in range(80)
    ]
    record(log, *rows)
    # Stored before the API bounded values: c0 gets two 1.7e308 (its sum overflows), c2 one.
    for decision_id in ("d0", "d40", "d2"):
        assert log.add_feedback(decision_id, "converted", 1.7e308).known
    log.add_feedback("d1", "converted", 5.0)
    log.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning either
        text, _ = ab.report(settings, "e1", tmp_path / "r.html")
    assert "nan" not in text.lower() and "inf" not in text.lower().replace("info", ""), text
    assert "value comparison skipped" in text and "not finite" in text
    assert "outcome rate: b vs a" in text and "p-value 0." in text  # the rate comparison is still there
