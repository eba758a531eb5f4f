"""Experiment declarations, assignment, and routing inside the runtime (no server, no MLflow)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from features.definitions import feature_set_version
from features.online_store import write_store
from features.settings import load_settings
from serving.decision_log import SQLiteDecisionLog
from serving.experiments import (
    HOLDOUT,
    ExperimentError,
    Variant,
    assign,
    load_experiments,
    parse_variant,
    start_experiment,
    stop_experiment,
)
from serving.runtime import Runtime
from tests.serving.conftest import AS_OF, build_bundles, feature_frame
from tests.serving.logged import read_decision

# --- declarations --------------------------------------------------------------------------------------------


def test_start_stop_roundtrip_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    variants = [parse_variant("champion=0.45"), parse_variant("3=0.45")]
    exp = start_experiment(path, "nbo-1", "next_best_offer", variants, shadow="challenger", holdout=0.1)
    loaded = load_experiments(path).get("nbo-1")
    assert loaded == exp
    assert loaded.arms() == [(HOLDOUT, 0.1), ("champion", 0.45), ("3", 0.45)]
    assert loaded.variants[1].version == 3 and loaded.variants[0].version is None
    with pytest.raises(ExperimentError, match="already running"):
        start_experiment(path, "nbo-1", "next_best_offer", variants, holdout=0.1)
    with pytest.raises(ExperimentError, match="only one experiment can run"):
        start_experiment(path, "other", "churn", [Variant(ref="champion", share=0.5), Variant(ref="b", share=0.5)])
    stopped = stop_experiment(path, "nbo-1")
    assert stopped.status == "stopped" and stopped.stopped_at is not None
    with pytest.raises(ExperimentError, match="already stopped"):
        stop_experiment(path, "nbo-1")
    with pytest.raises(ExperimentError, match="another definition"):
        start_experiment(path, "nbo-1", "next_best_offer", [Variant(ref="champion", share=0.9)], holdout=0.1)
    again = start_experiment(path, "nbo-1", "next_best_offer", variants, shadow="challenger", holdout=0.1)
    assert again.status == "running" and again.started_at == exp.started_at
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variants": ["champion=0.5", "challenger=0.4"]}, "sum to 1"),
        ({"variants": ["champion=0.5", "champion=0.5"]}, "twice"),
        ({"variants": ["champion=0.5", "challenger=0.5"], "shadow": "champion"}, "also a served variant"),
        ({"variants": ["champion=0.5", "holdout=0.5"]}, "not 'holdout'"),
        ({"variants": ["champion=0.5", "b=0.5"], "name": "bad name!"}, "experiment name"),
        ({"variants": ["champion=1.5"]}, "must be a number between 0 and 1"),
        ({"variants": ["champion=nan"]}, r"--variant 'champion=nan': the share must be a number between 0 and 1"),
        ({"variants": ["champion=1.0"]}, "one --variant, no holdout and no shadow: nothing to compare"),
        ({"variants": ["champion=0.9"], "holdout": 0.1}, "--holdout applies only to --model next_best_offer or"),
        ({"variants": ["champion=0.5", "b=0.5"], "holdout": 1.5}, r"--holdout 1\.5: must be a number from 0"),
        ({"variants": ["champion=0.5", "b=0.5"], "holdout": float("nan")}, "--holdout nan: must be a number"),
        ({"variants": ["champion=0.5", "b=0.5"], "shadow": "bad ref!"}, r"--shadow: shadow 'bad ref!' must be"),
        ({"variants": ["champion=0.5", "b=0.5"], "outcome": 3}, "--outcome: Input should be a valid string"),
    ],
)
def test_invalid_declarations_say_why(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = tmp_path / "experiments.yaml"
    specs = kwargs.pop("variants")
    name = kwargs.pop("name", "e1")
    with pytest.raises(ExperimentError, match=message) as err:
        start_experiment(path, name, "churn", [parse_variant(s) for s in specs], **kwargs)
    assert not path.exists()
    # Plain sentences: none of pydantic's wording or links.
    assert "Value error" not in str(err.value) and "pydantic" not in str(err.value)


def test_one_variant_with_a_shadow_is_an_experiment(tmp_path: Path) -> None:
    # The shadow is scored and logged beside the served variant: that is the comparison.
    experiment = start_experiment(tmp_path / "e.yaml", "e1", "personalize", [parse_variant("champion=1")], shadow="2")
    assert experiment.shadow == "2" and [v.ref for v in experiment.variants] == ["champion"]


def test_a_bad_shadow_is_called_shadow_in_the_registry_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from cxpredict import registry
    from serving import ab

    def resolve(client, model, ref) -> int:
        if ref == "nosuch":
            raise ValueError("no such alias")
        return 1

    monkeypatch.setattr(registry, "configure", lambda settings: SimpleNamespace(get_model_version=lambda m, v: None))
    monkeypatch.setattr(registry, "resolve", resolve)
    settings = load_settings({"CXPREDICT_HOME": "/nonexistent"})
    assert ab.check_variants_exist(settings, ["churn"], ["champion", "b"]) == {
        "champion": {"churn": 1},
        "b": {"churn": 1},
    }
    with pytest.raises(ExperimentError, match="^shadow 'nosuch': model 'churn' has no alias or version 'nosuch'"):
        ab.check_variants_exist(settings, ["churn"], ["champion", "b"], shadow="nosuch")


def test_hand_edited_file_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(
        "experiments:\n  - name: e1\n    model: churn\n    variants: [{ref: champion, share: 1}]\n    typo: 1\n"
    )
    with pytest.raises(ExperimentError, match=r"experiments\.yaml: experiments\.0\.typo"):
        load_experiments(path)
    path.write_text("experiments: [\n")
    with pytest.raises(ExperimentError, match="not valid YAML"):
        load_experiments(path)
    with pytest.raises(ExperimentError, match="ALIAS=SHARE"):
        parse_variant("champion")


# --- assignment ----------------------------------------------------------------------------------------------


def test_assignment_is_sticky_and_shares_hold_on_100k_ids() -> None:
    arms = [(HOLDOUT, 0.1), ("champion", 0.6), ("challenger", 0.3)]
    ids = [f"cust-{i}" for i in range(100_000)]
    got = [assign("exp-a", cid, arms) for cid in ids]
    counts = Counter(arm for arm, _ in got)
    expected = [share * len(ids) for _, share in arms]
    chi2 = stats.chisquare([counts[a] for a, _ in arms], expected)
    assert chi2.pvalue > 0.001, counts
    # The propensity is the arm's share, and repeated calls give the same arm.
    assert all(p == dict(arms)[a] for a, p in got[:1000])
    assert [assign("exp-a", cid, arms) for cid in ids[:1000]] == got[:1000]
    # Another experiment re-randomises: its arms are independent of this one's.
    other = [assign("exp-b", cid, arms)[0] for cid in ids[:20_000]]
    table = np.zeros((3, 3))
    index = {a: i for i, (a, _) in enumerate(arms)}
    for (a, _), b in zip(got[:20_000], other, strict=True):
        table[index[a], index[b]] += 1
    assert stats.chi2_contingency(table).pvalue > 0.001


# --- routing in the runtime ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("versions")
    return {"v1": build_bundles(root / "v1", seed=0), "v2": build_bundles(root / "v2", seed=5)}


def _entry(paths: dict[str, Path], version: int, models: tuple[str, ...]) -> dict:
    return {m: {"model": m, "version": version, "path": str(paths[m])} for m in models}


def write_experiment_manifest(home: Path, versions: dict[str, dict[str, Path]], target: str = "personalize") -> None:
    models = ("churn", "cltv", "next_best_offer") if target == "personalize" else (target,)
    manifest = {name: {"version": 1, "path": str(path)} for name, path in versions["v1"].items()}
    manifest["experiments"] = [
        {
            "name": "exp1",
            "model": target,
            "holdout": 0.2,
            "outcome": "converted",
            "arms": [
                {"name": "champion", "share": 0.4, "models": _entry(versions["v1"], 1, models)},
                {"name": "challenger", "share": 0.4, "models": _entry(versions["v2"], 2, models)},
            ],
            "shadow": {"name": "shadowed", "models": _entry(versions["v2"], 2, models)},
        }
    ]
    tmp = home / ".serving.json.tmp"
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, home / "serving.json")


@pytest.fixture()
def runtime(tmp_path: Path, two_versions: dict[str, dict[str, Path]]) -> Runtime:
    write_experiment_manifest(tmp_path, two_versions)
    frame = feature_frame(400, seed=11)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(400)])
    write_store(tmp_path / "online", frame, AS_OF, feature_set_version())
    rt = Runtime(load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_API_KEYS": "k"}))
    yield rt
    rt.decisions.close()


def test_runtime_routes_by_arm_logs_propensity_and_shadow(runtime: Runtime) -> None:
    answers = [runtime.personalize(f"c{i}", context={"channel": "web"}) for i in range(400)]
    arms = Counter(a["experiment"]["variant"] for a in answers)
    assert set(arms) == {HOLDOUT, "champion", "challenger"}
    assert stats.chisquare([arms[HOLDOUT], arms["champion"], arms["challenger"]], [80, 160, 160]).pvalue > 0.001
    for a in answers:
        arm = a["experiment"]["variant"]
        assert (arm, a["experiment"]["holdout"]) == (
            assign("exp1", a["customer_id"], runtime.models.experiments[0].arms)[0],
            arm == HOLDOUT,
        )
        expected_version = 2 if arm == "challenger" else 1
        assert a["model_versions"] == {
            "churn": expected_version,
            "cltv": expected_version,
            "next_best_offer": expected_version,
        }
        if arm == HOLDOUT:
            assert a["next_best_offer"]["available"] is False and a["next_best_offer"]["holdout"] is True
        else:  # an offer, or none where no offer pays
            assert a["next_best_offer"]["available"] and a["next_best_offer"]["offer_id"] in {
                "discount10",
                "loyalty",
                None,
            }
    # Same customer, same arm; and the arms really answer with different models.
    again = runtime.personalize("c0")
    assert again["experiment"] == answers[0]["experiment"]
    champ = [a for a in answers if a["experiment"]["variant"] == "champion"]
    chall = [a for a in answers if a["experiment"]["variant"] == "challenger"]
    assert {round(a["churn"]["probability"], 6) for a in champ} != {round(a["churn"]["probability"], 6) for a in chall}

    runtime.wait_for_shadow()
    log: SQLiteDecisionLog = runtime.decisions  # type: ignore[assignment]
    rows = log.experiment_rows("exp1")
    served = {r["decision_id"]: r for r in rows if not r["shadow"]}
    shadow = [r for r in rows if r["shadow"]]
    assert len(served) == 401 and len(shadow) == 401
    assert {r["variant"] for r in shadow} == {"shadowed"}
    for a in answers:
        row = served[a["decision_id"]]
        assert row["propensity"] == pytest.approx({HOLDOUT: 0.2, "champion": 0.4, "challenger": 0.4}[row["variant"]])
        shown = "none" if a["experiment"]["holdout"] else (a["next_best_offer"]["offer_id"] or "none")
        assert row["offer_id"] == shown
    # Every shadow record points at the served decision it shadows; no answer ever carried the shadow's scores.
    stored = read_decision(log, shadow[0]["decision_id"])
    assert stored["outputs"]["served_decision_id"] in served
    assert stored["model_versions"]["churn"] == 2
    assert all(a["experiment"]["variant"] != "shadowed" for a in answers)


def test_single_model_experiment_keeps_champions_for_other_parts(tmp_path: Path, two_versions) -> None:
    write_experiment_manifest(tmp_path, two_versions, target="churn")
    frame = feature_frame(60, seed=2)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(60)])
    write_store(tmp_path / "online", frame, AS_OF, feature_set_version())
    rt = Runtime(load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_API_KEYS": "k"}))
    try:
        answers = [rt.personalize(f"c{i}") for i in range(60)]
        for a in answers:
            churn_version = 2 if a["experiment"]["variant"] == "challenger" else 1
            assert a["model_versions"] == {"churn": churn_version, "cltv": 1, "next_best_offer": 1}
        # A cltv-only request is outside a churn experiment.
        assert rt.personalize("c1", parts=("cltv",))["experiment"] is None
        batch = rt.personalize_many([f"c{i}" for i in range(60)])
        assert [b["experiment"] for b in batch] == [a["experiment"] for a in answers]
    finally:
        rt.decisions.close()


# --- a broken experiments file or an unroutable experiment ----------------------------------------------------


def test_broken_experiments_file_keeps_the_last_valid_experiments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.manifest as manifest_module
    from cxpredict import registry

    def bundle_entry(client, cache, name, ref, known) -> dict:
        if ref == "nosuch":
            raise ValueError(f"model '{name}' has no alias '{ref}'")
        version = 2 if ref == "challenger" else 1
        return {"model": name, "version": version, "run_id": f"run{version}", "path": f"/b/{name}/{ref}"}

    monkeypatch.setattr(registry, "resolve", lambda client, name, ref: 1)
    monkeypatch.setattr(manifest_module, "_bundle_entry", bundle_entry)
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_API_KEYS": "k"})
    path = tmp_path / "experiments.yaml"
    start_experiment(path, "e1", "churn", [parse_variant("champion=0.5"), parse_variant("challenger=0.5")])
    valid = manifest_module._resolve(settings, None, None)
    assert [e["name"] for e in valid["experiments"]] == ["e1"] and "experiments_error" not in valid

    path.write_text("experiments: [\n")  # a bad hand edit mid-test
    broken = manifest_module._resolve(settings, None, valid)
    assert broken["experiments"] == valid["experiments"]
    assert "not valid YAML" in broken["experiments_error"]
    path.write_bytes("experiments: [{name: caf\xe9}]\n".encode("latin-1"))  # an editor saving in Latin-1
    broken = manifest_module._resolve(settings, None, valid)
    assert broken["experiments"] == valid["experiments"]
    assert f"{path}: cannot be read as UTF-8" in broken["experiments_error"]

    # An experiment whose variant names an unknown alias is listed with its error, and `ab list` says so.
    path.unlink()
    start_experiment(path, "e2", "churn", [parse_variant("champion=0.5"), parse_variant("nosuch=0.5")])
    unrouted = manifest_module._resolve(settings, None, valid)
    assert unrouted["experiments"] == [{"name": "e2", "model": "churn", "error": "model 'churn' has no alias 'nosuch'"}]
    manifest_module.write_manifest(tmp_path / "serving.json", unrouted)
    from serving.ab import list_experiments

    (row,) = list_experiments(settings)
    assert row["status"] == "unrouted" and row["routed"] is False
    assert "no alias 'nosuch'" in row["error"] and "NOT ROUTED" in row["variants"]


def test_worker_counts_experiment_errors_and_keeps_routing(tmp_path: Path, runtime: Runtime) -> None:
    home = Path(runtime.settings.home)
    manifest = json.loads((home / "serving.json").read_text())
    assert runtime.experiments_errors == 0 and runtime.totals()["experiments_errors"] == 0
    manifest["experiments_error"] = "experiments.yaml: not valid YAML"
    (home / "serving.json").write_text(json.dumps(manifest))
    assert runtime.maybe_reload(force=True)
    assert [e.name for e in runtime.models.experiments] == ["exp1"]
    assert runtime.personalize("c1")["experiment"]["name"] == "exp1"
    assert runtime.totals()["experiments_errors"] == 1
    # The same error in a rewritten manifest (a champion change, say) is not counted again; a new one is.
    manifest["churn"]["version"] = 7
    (home / "serving.json").write_text(json.dumps(manifest))
    assert runtime.maybe_reload(force=True) and runtime.experiments_errors == 1
    manifest["experiments"].append({"name": "exp2", "model": "churn", "error": "model 'churn' has no alias 'x'"})
    (home / "serving.json").write_text(json.dumps(manifest))
    assert runtime.maybe_reload(force=True) and runtime.experiments_errors == 2
