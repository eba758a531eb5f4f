"""Training end to end on a small synthetic slice: determinism, registry round trip, honesty checks."""

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from cxpredict.cli import app
from features import registry
from features.churn_blend import BLEND_INPUTS
from features.data import load_data_dir
from features.kinds import open_bundle, score_frame
from features.pipeline import build_features, build_snapshots
from features.scoring import Encoder
from tests.training.conftest import AS_OF, make_settings, small_config
from training.train import TrainingDataError, _xgb_params, fit_churn, fit_cltv, snapshot_cutoffs, train


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("run1")
    settings = make_settings(root)
    result = train(synthetic_dir, AS_OF, small_config(), settings)
    return settings, result


def test_trains_registers_and_beats_chance(trained):
    settings, result = trained
    assert {m for m, r in result.models.items() if r.version} == {"churn", "cltv", "next_best_offer"}
    assert all(r.alias == "champion" and r.version == 1 for r in result.models.values())
    churn = result.models["churn"].metrics
    assert churn["roc_auc"] > 0.7  # time holdout, not training data
    assert result.models["cltv"].metrics["normalized_gini"] > 0.3
    nbo = result.models["next_best_offer"].metrics
    assert nbo["policy_value_model"] > nbo["policy_value_random"]
    client = registry.configure(settings)
    mv = client.get_model_version_by_alias("churn", "champion")
    assert mv.tags["feature_set_version"]
    runs = mlflow.search_runs(experiment_names=["cxpredict"], output_format="list")
    parent = [r for r in runs if r.info.run_id == result.run_id][0]
    assert parent.data.params["data_hash"] and parent.data.params["feature_set_version"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id]
    assert {r.info.run_name for r in children} == {"churn", "cltv", "next_best_offer"}
    churn_run = [r for r in children if r.info.run_name == "churn"][0]
    assert "lift_at_10pct" in churn_run.data.metrics
    # Early stopping chose the number of trees, and the run says how many the registered model has.
    assert 1 <= churn_run.data.metrics["trees_main"] <= small_config().xgb.n_estimators
    assert "trees_main" in [r for r in children if r.info.run_name == "cltv"][0].data.metrics


def test_each_run_sets_its_model_beside_the_baselines_on_the_same_holdout(trained, synthetic_dir, tmp_path):
    settings, result = trained
    runs = mlflow.search_runs(experiment_names=["cxpredict"], output_format="list")
    child = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id}
    churn, cltv = child["churn"].data, child["cltv"].data
    for name in ("rfm_logit", "bgnbd"):
        assert {f"baseline_{name}_{m}" for m in ("roc_auc", "pr_auc", "brier", "log_loss", "ece")} <= set(churn.metrics)
        assert f"{name} on the holdout: roc_auc=" in churn.tags["baselines_verdict"]
    for name in ("last_period", "bgnbd_gg"):
        keys = {f"baseline_{name}_{m}" for m in ("normalized_gini", "spearman", "mae", "total_spend_error")}
        assert keys <= set(cltv.metrics)
        assert f"{name} on the holdout: normalized_gini=" in cltv.tags["baselines_verdict"]
    # Refitted here by hand on the holdout snapshot the runs used: the logged figures are those of the same rows.
    con, _ = load_data_dir(synthetic_dir)
    cfg = small_config()
    cuts, cut = snapshot_cutoffs(AS_OF, con.execute("SELECT min(ts) FROM transactions").fetchall()[0][0], cfg)
    frame = build_snapshots(con, [*cuts, cut], cfg.horizon_days, cfg.cltv_horizon_days)
    fit, hold = frame[frame.snapshot < pd.Timestamp(cut)], frame[frame.snapshot == pd.Timestamp(cut)]
    cols = ["recency_days", "frequency_365d", "monetary_365d"]
    med = fit[cols].median()
    rfm = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(fit[cols].fillna(med), fit.churned)
    auc = roc_auc_score(hold.churned, rfm.predict_proba(hold[cols].fillna(med))[:, 1])
    assert churn.metrics["baseline_rfm_logit_roc_auc"] == pytest.approx(auc, abs=1e-6)
    carried = hold.monetary_90d.fillna(0).clip(lower=0)
    assert cltv.metrics["baseline_last_period_mae"] == pytest.approx((hold.spend_h - carried).abs().mean())
    table = pd.read_csv(
        MlflowClient(settings.tracking_uri).download_artifacts(child["churn"].info.run_id, "baselines.csv", tmp_path),
        index_col=0,
    )
    assert list(table.index) == ["model", "rfm_logit", "bgnbd"]
    assert table.loc["model", "roc_auc"] == pytest.approx(churn.metrics["roc_auc"])
    assert table.loc["bgnbd", "brier"] == pytest.approx(churn.metrics["baseline_bgnbd_brier"])


def test_the_back_test_a_year_earlier_sets_the_registered_levels_and_the_runs_say_so(trained, tmp_path):
    # The fixture's two years of data reach a year back: both models were moved by their back-test.
    settings, result = trained
    client = registry.configure(settings)
    churn, _ = registry.load_bundle(client, "churn", "champion", tmp_path / "cache")
    cltv, _ = registry.load_bundle(client, "cltv", "champion", tmp_path / "cache")
    year_ago = f"{pd.Timestamp(AS_OF) - pd.Timedelta(days=364):%Y-%m-%d}"  # the registered fit's target, moved back
    assert churn.meta.blend["season_shift"] != 0.0
    assert "churn logit" in churn.meta.blend["note"] and year_ago in churn.meta.blend["note"]
    assert cltv.meta.spend_season != 1.0 and "season x" in cltv.meta.spend_scale_note
    assert cltv.meta.spend_scale == pytest.approx(cltv.meta.spend_balance * cltv.meta.spend_season)
    assert year_ago in cltv.meta.spend_scale_note
    runs = mlflow.search_runs(experiment_names=["cxpredict"], output_format="list")
    child = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id}
    assert "churn logit" in child["churn"].data.tags["churn_calibration"]
    assert child["churn"].data.metrics["season_shift"] != 0.0
    # The blend's weights, one per input (the booster, the RFM regression, BG/NBD), as the registered fit's kind.
    weights = [child["churn"].data.metrics[f"blend_weight_{name}"] for name in BLEND_INPUTS]
    assert len(churn.meta.blend["weights"]) == 3 and all(w >= 0 for w in weights) and weights[0] > 0
    assert "season x" in child["cltv"].data.tags["spend_scale_note"]
    # The evaluated fit's three snapshots are 30 days apart: none a horizon older than the newest, so no spend
    # blend, and the run says so. The registered fit adds the holdout snapshot, 90 days after the newest of them.
    tags, metrics, params = child["cltv"].data.tags, child["cltv"].data.metrics, child["cltv"].data.params
    assert "no blend with BG/NBD" in tags["spend_scale_note"]
    assert not any(k.startswith("spend_blend_") for k in metrics)
    blend = cltv.meta.spend_blend
    assert blend is not None and "no blend" not in tags["registered_spend_scale_note"]
    assert float(params["spend_blend_weight_btyd"]) == pytest.approx(blend.btyd_weight, abs=1e-6)
    assert float(params["spend_blend_weight_booster"]) == pytest.approx(blend.booster_weight, abs=1e-6)
    logged = child["cltv"].data.params
    assert float(logged["spend_season"]) == pytest.approx(cltv.meta.spend_season, rel=1e-5)
    assert float(logged["spend_balance"]) == pytest.approx(cltv.meta.spend_balance, rel=1e-5)


def test_the_back_test_can_be_turned_off(synthetic_dir, tmp_path):
    settings = make_settings(tmp_path)
    train(synthetic_dir, AS_OF, small_config(models=("churn",), year_ago_backtest=False), settings)
    churn, _ = registry.load_bundle(registry.configure(settings), "churn", "champion", tmp_path / "cache")
    assert churn.meta.blend["season_shift"] == 0.0 and "no history given" in churn.meta.blend["note"]


def test_registry_model_predicts_like_in_memory(trained, synthetic_dir, tmp_path):
    settings, _ = trained
    client = registry.configure(settings)
    con, _ = load_data_dir(synthetic_dir)
    frame = build_features(con, AS_OF).head(200)
    for name in ("churn", "cltv", "next_best_offer"):
        bundle, version = registry.load_bundle(client, name, "champion", tmp_path / "cache")
        direct = score_frame(bundle, frame).reset_index(drop=True)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(frame)
        pd.testing.assert_frame_equal(direct, pyfunc.reset_index(drop=True))


def test_training_is_deterministic(synthetic_dir, trained, tmp_path):
    _, first = trained
    again = train(synthetic_dir, AS_OF, small_config(), make_settings(tmp_path))
    for name in ("churn", "cltv", "next_best_offer"):
        assert again.models[name].metrics == pytest.approx(first.models[name].metrics, rel=1e-9, abs=1e-12)


def test_second_version_is_challenger_and_promote_moves_alias(synthetic_dir, tmp_path):
    settings = make_settings(tmp_path)
    cfg = small_config(models=("churn",))
    train(synthetic_dir, AS_OF, cfg, settings)
    second = train(synthetic_dir, AS_OF, cfg, settings)
    assert second.models["churn"].alias == "challenger" and second.models["churn"].version == 2
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    assert client.get_model_version_by_alias("churn", "champion").version in (1, "1")
    env = {"MLFLOW_TRACKING_URI": settings.tracking_uri, "CXPREDICT_HOME": str(settings.home)}
    res = CliRunner().invoke(app, ["promote", "churn", "2", "--alias", "champion"], env=env)
    assert res.exit_code == 0, res.output
    assert int(client.get_model_version_by_alias("churn", "champion").version) == 2
    bad = CliRunner().invoke(app, ["promote", "churn", "9"], env=env)
    assert bad.exit_code == 2 and "no version 9" in bad.output


def test_permuted_labels_score_at_chance(synthetic_dir):
    # No path from labels into features: with labels shuffled, the time-holdout AUC must fall to ~0.5.
    con, _ = load_data_dir(synthetic_dir)
    cfg = small_config()
    from features.pipeline import build_snapshots

    cuts, hold = snapshot_cutoffs(AS_OF, con.execute("SELECT min(ts) FROM transactions").fetchall()[0][0], cfg)
    frame = build_snapshots(con, [*cuts, hold], 90, 365)
    rng = np.random.default_rng(0)
    train_part = frame[frame.snapshot < pd.Timestamp(hold)].copy()
    train_part["churned"] = rng.permutation(train_part.churned.to_numpy())
    hold_part = frame[frame.snapshot == pd.Timestamp(hold)]
    enc = Encoder.fit(frame)
    from training.metrics import churn_metrics

    shuffled = fit_churn(train_part, cfg, enc).churn_probability(enc.encode_frame(hold_part))
    auc = churn_metrics(hold_part.churned.to_numpy(), shuffled)["roc_auc"]
    honest = fit_churn(frame[frame.snapshot < pd.Timestamp(hold)], cfg, enc).churn_probability(
        enc.encode_frame(hold_part)
    )
    assert 0.4 < auc < 0.6
    assert churn_metrics(hold_part.churned.to_numpy(), honest)["roc_auc"] > auc + 0.15


def _training_snapshots(synthetic_dir, cfg):
    from features.pipeline import build_snapshots

    con, _ = load_data_dir(synthetic_dir)
    cuts, hold = snapshot_cutoffs(AS_OF, con.execute("SELECT min(ts) FROM transactions").fetchall()[0][0], cfg)
    frame = build_snapshots(con, [*cuts, hold], 90, 365)
    return frame[frame.snapshot < pd.Timestamp(hold)].reset_index(drop=True), Encoder.fit(frame)


def test_early_stopping_keeps_fewer_trees_on_noise_and_every_tree_when_off(synthetic_dir):
    cfg = small_config()
    train_part, enc = _training_snapshots(synthetic_dir, cfg)
    noise = train_part.copy()
    noise["churned"] = np.random.default_rng(1).permutation(noise.churned.to_numpy())
    noise["spend_h"] = np.random.default_rng(2).permutation(noise.spend_h.to_numpy())
    assert fit_churn(noise, cfg, enc).boosters["main"].num_boosted_rounds() < cfg.xgb.n_estimators
    assert fit_cltv(noise, cfg, enc, 4.0, "btyd_ratio").boosters["main"].num_boosted_rounds() < cfg.xgb.n_estimators
    off = small_config()
    off.xgb.early_stopping_rounds = None
    assert fit_churn(noise, off, enc).boosters["main"].num_boosted_rounds() == off.xgb.n_estimators
    assert fit_cltv(noise, off, enc, 4.0, "btyd_ratio").boosters["main"].num_boosted_rounds() == off.xgb.n_estimators


def test_churn_trees_never_see_the_calibration_snapshot(synthetic_dir):
    # The newest snapshot chooses the number of trees and calibrates; the trees themselves must be those fitted
    # on the older snapshots alone, or the calibration would be fitted on scores of rows the model has seen.
    cfg = small_config()
    train_part, enc = _training_snapshots(synthetic_dir, cfg)
    bundle = fit_churn(train_part, cfg, enc)
    booster = bundle.boosters["main"]
    older = train_part.snapshot < train_part.snapshot.max()
    # The booster's inputs: the features, then the BG/NBD ones (fitted without the newest snapshot too).
    assert bundle.meta.bgnbd is not None
    x = bundle.inputs(enc.encode_frame(train_part))
    params = _xgb_params(cfg, "binary:logistic")
    # Recency only raises the churn score (fit_churn's monotone constraint).
    cols = bundle.input_columns
    params["monotone_constraints"] = "(" + ",".join("1" if c == "recency_days" else "0" for c in cols) + ")"
    alone = xgb.train(
        params,
        xgb.DMatrix(x[older.to_numpy()], label=train_part.churned.to_numpy()[older.to_numpy()], missing=np.nan),
        num_boost_round=booster.num_boosted_rounds(),
    )
    np.testing.assert_array_equal(booster.inplace_predict(x), alone.inplace_predict(x))


def test_no_offers_skips_nbo_with_reason(synthetic_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in synthetic_dir.iterdir():
        if f.stem not in ("offers", "offer_catalog"):
            (data / f.name).write_bytes(f.read_bytes())
    result = train(data, AS_OF, small_config(), make_settings(tmp_path))
    assert result.models["next_best_offer"].skipped and "no offers" in result.models["next_best_offer"].skipped
    assert result.models["churn"].version == 1


def test_history_too_short_is_a_clear_error(synthetic_dir, tmp_path):
    with pytest.raises(TrainingDataError, match="history too short"):
        train(synthetic_dir, pd.Timestamp("2023-04-01").to_pydatetime(), small_config(), make_settings(tmp_path))


def test_feature_set_mismatch_is_refused(trained, tmp_path):
    settings, _ = trained
    bundle, _ = registry.load_bundle(registry.configure(settings), "churn", "champion", tmp_path)
    path = bundle.save(tmp_path / "b")
    meta = (path / "bundle.json").read_text().replace(bundle.meta.feature_set_version, "0.stale")
    (path / "bundle.json").write_text(meta)
    from features.scoring import FeatureSetMismatch

    with pytest.raises(FeatureSetMismatch, match="0.stale"):
        open_bundle(path)
