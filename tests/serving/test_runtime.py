"""The runtime, decision log and manifest without a server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from features.definitions import CANCELLED_FEATURE, feature_set_version
from features.online_store import write_store
from features.settings import load_settings
from serving.decision_log import SQLiteDecisionLog
from serving.keys import KeyRing
from serving.manifest import reload_interval, write_manifest
from serving.runtime import Runtime, StartupError, UnknownCustomer
from tests.serving.conftest import AS_OF, ROOT, build_bundles, feature_frame
from tests.serving.conftest import write_manifest as write_test_manifest
from tests.serving.logged import read_decision, record


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_bundles(tmp_path_factory.mktemp("bundles"))


def make_home(tmp_path: Path, bundles: dict[str, Path], keys: str | None = "k1,k2") -> Path:
    write_test_manifest(tmp_path, bundles, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    frame = feature_frame(5, seed=3)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(5)])
    write_store(tmp_path / "online", frame, AS_OF, feature_set_version())
    return tmp_path


def settings_for(home: Path, keys: str | None = "k1,k2"):
    env = {"CXPREDICT_HOME": str(home)}
    if keys is not None:
        env["CXPREDICT_API_KEYS"] = keys
    return load_settings(env)


def test_refuses_bundle_from_another_feature_set(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    bad = tmp_path / "bad_churn"
    bad.mkdir()
    for f in bundles["churn"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    meta = json.loads((bad / "bundle.json").read_text())
    meta["feature_set_version"] = "0.0000000000"
    (bad / "bundle.json").write_text(json.dumps(meta))
    write_test_manifest(home, {**bundles, "churn": bad}, {"churn": 9, "cltv": 1, "next_best_offer": 1})
    with pytest.raises(StartupError, match="feature set 0.0000000000.*retrain"):
        Runtime(settings_for(home))


def test_refuses_to_start_without_keys_models_or_store(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    with pytest.raises(StartupError, match="CXPREDICT_API_KEYS"):
        KeyRing(settings_for(home, keys=None))
    (home / "api_key").write_text("demo-key\n")
    assert KeyRing(settings_for(home, keys=None)).authenticate("Bearer demo-key").name == "demo"
    (home / "online" / "features.sqlite").unlink()
    with pytest.raises(StartupError, match="materialize"):
        Runtime(settings_for(home))
    (home / "serving.json").unlink()
    with pytest.raises(StartupError, match="cxpredict serve"):
        Runtime(settings_for(home))
    write_manifest(home / "serving.json", {n: {"version": None, "path": None, "reason": "none"} for n in bundles})
    with pytest.raises(StartupError, match="no model to serve"):
        Runtime(settings_for(home))


def test_refuses_to_start_on_a_decision_log_that_is_not_a_database(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    (home / "decisions.sqlite").write_bytes(b"not a database " * 100)
    with pytest.raises(StartupError, match=r"decisions\.sqlite cannot be opened.*move the file away"):
        Runtime(settings_for(home))


def test_keys_and_absent_model(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    manifest = {n: {"version": 1, "path": str(p)} for n, p in bundles.items()}
    manifest["next_best_offer"] = {"version": None, "path": None, "reason": "model 'next_best_offer' has no alias"}
    write_manifest(home / "serving.json", manifest)
    rt = Runtime(settings_for(home))
    answer = rt.personalize("c1")
    assert answer["next_best_offer"] == {"available": False, "detail": "model 'next_best_offer' has no alias"}
    assert answer["model_versions"] == {"churn": 1, "cltv": 1}
    with pytest.raises(UnknownCustomer):
        rt.personalize("zzz")


def test_reload_swaps_models_and_survives_bad_manifest(tmp_path: Path, bundles: dict[str, Path]) -> None:
    home = make_home(tmp_path, bundles)
    rt = Runtime(settings_for(home))
    old = rt.models
    assert not rt.maybe_reload(force=True)
    (home / "serving.json").write_text("[]")
    assert not rt.maybe_reload(force=True) and rt.models.bundles is old.bundles and rt.reload_errors == 1
    write_test_manifest(home, bundles, {"churn": 5, "cltv": 1, "next_best_offer": 1})
    assert rt.maybe_reload(force=True)
    assert rt.models.versions["churn"] == 5 and rt.personalize("c0")["model_versions"]["churn"] == 5


def test_decision_log_feedback_is_idempotent(tmp_path: Path) -> None:
    log = SQLiteDecisionLog(tmp_path / "d.sqlite")
    record(log, {"decision_id": "d1", "customer_id": "c1", "model_versions": {"churn": 1}, "churn": {"p": 0.5}})
    assert not log.add_feedback("nope", "converted", 1.0).known
    assert log.add_feedback("d1", "converted", 1.0).known and log.add_feedback("d1", "converted", 2.0).known
    stored = read_decision(log, "d1")
    assert stored is not None and [f["value"] for f in stored["feedback"]] == [1.0]
    assert stored["outputs"]["churn"] == {"p": 0.5}
    threads = [threading.Thread(target=log.add_feedback, args=("d1", f"o{i}", None)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(read_decision(log, "d1")["feedback"]) == 9
    assert read_decision(log, "missing") is None


def test_reload_interval_setting() -> None:
    assert reload_interval({}) == 10.0
    assert reload_interval({"CXPREDICT_RELOAD_SECONDS": "2"}) == 2.0
    assert reload_interval({"CXPREDICT_RELOAD_SECONDS": "soon"}) == 10.0


@pytest.mark.xfail(
    strict=True,
    reason="xgboost imports scikit-learn (and pandas) at import (xgboost/compat.py); the worker stays light only "
    "once it loads bundles without importing xgboost (model-kind/Predictor work)",
)
def test_worker_imports_neither_mlflow_nor_pandas() -> None:
    code = (
        "import sys, serving.service;"
        "print(sorted(m for m in ('mlflow', 'pandas', 'sklearn') if sys.modules.get(m) is not None))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"BENTOML_DO_NOT_TRACK": "true", "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_items_decided_together_equal_items_decided_alone(tmp_path: Path, bundles: dict[str, Path]) -> None:
    """What the service's coalescing relies on: an answer depends on its own item only, and so does its record."""
    home = make_home(tmp_path, bundles)
    rt = Runtime(settings_for(home))
    try:
        items = [
            rt.prepare("c1", {"channel": "email"}),
            rt.prepare("c2", {"channel": "sms"}, {"recency_days": 400.0}),
            rt.prepare("new-one", {"channel": "web"}, {"recency_days": 3.0, "tenure_days": 500}),
            rt.prepare("c1", {"channel": "app"}),
        ]
        assert items[2].as_of is None and items[0].as_of is not None
        together, ack = rt.decide(items)
        ack.result(timeout=10)
        alone = [rt.decide([item])[0][0] for item in items]
        for a, b in zip(together, alone, strict=True):
            assert {k: v for k, v in a.items() if k != "decision_id"} == {
                k: v for k, v in b.items() if k != "decision_id"
            }
        assert len({a["decision_id"] for a in together}) == len(items)
        for item, answer in zip(items, together, strict=True):
            stored = read_decision(rt.decisions, answer["decision_id"])
            assert stored is not None
            assert (stored["customer_id"], stored["context"]) == (item.customer_id, dict(item.context))
        with pytest.raises(UnknownCustomer):
            rt.prepare("nobody", {"channel": "email"})
    finally:
        rt.decisions.close()


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e300 is inf in float32
def test_stored_values_beyond_float32_still_give_a_json_answer(tmp_path: Path, bundles: dict[str, Path]) -> None:
    """A stored value float32 cannot hold (or an infinity) is read as infinity; its reason shows it as null."""
    write_test_manifest(tmp_path, bundles, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    frame = feature_frame(3, seed=3)
    numeric = [c for c in frame.columns if frame[c].dtype.kind == "f" and c != CANCELLED_FEATURE]
    frame.loc[0, numeric] = 1e300
    frame.loc[1, numeric] = float("inf")
    frame.insert(0, "customer_id", ["huge", "inf", "plain"])
    write_store(tmp_path / "online", frame, AS_OF, feature_set_version())
    runtime = Runtime(settings_for(tmp_path))
    try:
        for cid in ("huge", "inf"):
            answer = runtime.personalize(cid)
            json.dumps(answer, allow_nan=False)  # what the service sends; a non-finite number would raise here
            reasons = answer["churn"]["reasons"]
            assert reasons and all(r["value"] is None for r in reasons if r["feature"] in numeric)
            assert 0.0 <= answer["churn"]["probability"] <= 1.0
        assert any(r["value"] is not None for r in runtime.personalize("plain")["churn"]["reasons"])
    finally:
        runtime.decisions.close()
