"""The CLTV spend model: it reads the BTYD inputs, its total over its training rows is theirs, and it explains both."""

from __future__ import annotations

import numpy as np
import pytest

from features.btyd_inputs import BGNBD_INPUTS, DESCRIPTIONS, GAMMA_GAMMA, SPEND_INPUT
from features.kinds import open_bundle
from tests.training.conftest import small_config
from tests.training.test_train import _training_snapshots
from training.btyd_inputs import fit_inputs
from training.kinds.cltv import blend_metrics, fit_cltv


@pytest.fixture(scope="module")
def fitted(synthetic_dir):
    # Five snapshots 30 days apart: the newest has two a horizon (90 days) older, which fit the blend's booster.
    cfg = small_config(year_ago_backtest=False, max_snapshots=5)
    train_part, enc = _training_snapshots(synthetic_dir, cfg)
    return train_part, enc, fit_cltv(train_part, cfg, enc, 4.0, "btyd_ratio")


def test_the_spend_booster_reads_btyd_inputs_fitted_on_its_rows_and_survives_a_round_trip(fitted, tmp_path):
    train_part, enc, bundle = fitted
    x = enc.encode_frame(train_part)
    assert bundle.meta.btyd_inputs == fit_inputs(x, enc.columns, 90, spend=True)
    assert GAMMA_GAMMA in bundle.meta.btyd_inputs
    assert bundle.input_columns == [*enc.columns, *BGNBD_INPUTS, SPEND_INPUT]
    assert bundle.boosters["main"].num_features() == len(bundle.input_columns)
    loaded = open_bundle(bundle.save(tmp_path / "cltv"), check_feature_set=False)
    np.testing.assert_array_equal(loaded.spend(x[:300])[0], bundle.spend(x[:300])[0])


def test_the_spend_is_the_booster_blended_with_btyd_by_weights_fitted_a_horizon_later(fitted):
    train_part, enc, bundle = fitted
    x = enc.encode_frame(train_part)
    inputs = bundle.inputs(x)
    blend = bundle.meta.spend_blend
    assert blend is not None and blend.booster_weight >= 0 and blend.btyd_weight >= 0
    assert blend.booster_weight + blend.btyd_weight > 0.5  # a level alone would not rank anyone
    booster = np.maximum(bundle.boosters["main"].inplace_predict(inputs), 0.0)
    btyd_spend = np.expm1(inputs[:, bundle.input_columns.index(SPEND_INPUT)].astype(float))
    expected = blend.apply(booster, btyd_spend) * bundle.meta.spend_scale
    np.testing.assert_allclose(bundle.spend(x)[0], expected, rtol=1e-6)
    assert blend_metrics(bundle.meta) == {
        "spend_blend_intercept": blend.intercept,
        "spend_blend_weight_booster": blend.booster_weight,
        "spend_blend_weight_btyd": blend.btyd_weight,
    }
    newest = train_part.snapshot.max()
    assert f"fitted on the snapshot at {newest:%Y-%m-%d}" in bundle.meta.spend_scale_note
    older = int((train_part.snapshot <= newest - np.timedelta64(90, "D")).sum())
    assert f"booster fitted on the {older} rows" in bundle.meta.spend_scale_note


def test_the_spend_total_over_the_training_rows_is_theirs(fitted):
    train_part, enc, bundle = fitted
    x = enc.encode_frame(train_part)
    spend, value = bundle.spend(x)
    raw = bundle.unscaled_spend(bundle.inputs(x))
    actual = float(train_part.spend_h.clip(lower=0).sum())
    assert spend.sum() == pytest.approx(actual, rel=1e-4)
    assert bundle.meta.spend_balance == pytest.approx(actual / raw.sum(), rel=1e-4)
    assert bundle.meta.spend_season == 1.0 and bundle.meta.spend_scale == bundle.meta.spend_balance
    assert "balance x" in bundle.meta.spend_scale_note
    np.testing.assert_allclose(value, spend * 4.0, rtol=1e-6)


def test_drivers_name_the_expected_spend_in_money(fitted):
    train_part, enc, bundle = fitted
    x = enc.encode_frame(train_part)[:400]
    inputs = bundle.inputs(x)
    reasons = bundle.reasons(inputs)
    named = [(i, r) for i, row in enumerate(reasons) for r in row if r["feature"] == SPEND_INPUT]
    assert named, "the BTYD expected spend is never among the top drivers of spend"
    j = bundle.input_columns.index(SPEND_INPUT)
    for i, r in named:
        assert r["description"] == DESCRIPTIONS[SPEND_INPUT]
        if np.isnan(inputs[i, j]):  # no purchase yet: no expected orders, shown as unknown
            assert r["value"] is None
        else:
            assert r["value"] == pytest.approx(float(np.expm1(inputs[i, j])), rel=1e-3, abs=1e-3)
    assert any(r["value"] is not None and r["value"] > 0 for _, r in named)


def test_without_a_snapshot_a_horizon_older_the_spend_is_the_boosters(synthetic_dir):
    cfg = small_config(year_ago_backtest=False)  # three snapshots over 60 days
    train_part, enc = _training_snapshots(synthetic_dir, cfg)
    bundle = fit_cltv(train_part, cfg, enc, 4.0, "btyd_ratio")
    assert bundle.meta.spend_blend is None and blend_metrics(bundle.meta) == {}
    assert "no blend with BG/NBD + Gamma-Gamma (no training snapshot 90 days older)" in bundle.meta.spend_scale_note
    x = enc.encode_frame(train_part)[:200]
    booster = np.maximum(bundle.boosters["main"].inplace_predict(bundle.inputs(x)), 0.0)
    np.testing.assert_allclose(bundle.spend(x)[0], booster * bundle.meta.spend_scale, rtol=1e-6)
