"""The churn booster: BG/NBD inputs fitted out of time and carried in the bundle, recency monotone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from features.btyd_inputs import BGNBD_INPUTS
from features.btyd_inputs import DESCRIPTIONS as BGNBD_DESCRIPTIONS
from features.churn_blend import blend_logits, logit
from features.kinds import open_bundle
from tests.training.conftest import small_config
from tests.training.test_train import _training_snapshots
from training.backtest import YearAgo
from training.btyd_inputs import fit_bgnbd
from training.churn_model import SHIFT_BOUNDS, backtest_shift, fit_blend, fit_rfm
from training.train import fit_churn


@pytest.fixture(scope="module")
def fitted(synthetic_dir):
    cfg = small_config()
    train_part, enc = _training_snapshots(synthetic_dir, cfg)
    return train_part, enc, fit_churn(train_part, cfg, enc)


def test_bgnbd_is_fitted_without_the_newest_snapshot_and_survives_a_round_trip(fitted, tmp_path):
    train_part, enc, bundle = fitted
    x = enc.encode_frame(train_part)
    older = (train_part.snapshot < train_part.snapshot.max()).to_numpy()
    assert bundle.meta.bgnbd == fit_bgnbd(x[older], enc.columns, 90)
    assert bundle.meta.bgnbd != fit_bgnbd(x, enc.columns, 90)
    assert bundle.input_columns == [*enc.columns, *BGNBD_INPUTS]
    loaded = open_bundle(bundle.save(tmp_path / "churn"), check_feature_set=False)
    np.testing.assert_array_equal(loaded.churn_probability(x[:300]), bundle.churn_probability(x[:300]))


def test_bgnbd_inputs_are_explained_on_the_scale_users_read(fitted):
    train_part, enc, bundle = fitted
    reasons = [r for row in bundle.churn_reasons(enc.encode_frame(train_part)[:400]) for r in row]
    alive = [r for r in reasons if r["feature"] == BGNBD_INPUTS[0]]
    assert alive, "P(alive) never among the top reasons on data with planted dropout"
    assert all(r["description"] == BGNBD_DESCRIPTIONS[BGNBD_INPUTS[0]] for r in alive)
    assert all(r["value"] is None or 0.0 <= r["value"] <= 1.0 for r in alive)


def test_no_bgnbd_without_the_purchase_summary():
    x = np.ones((10, 3))
    assert fit_bgnbd(x, ["recency_days", "frequency_365d", "monetary_365d"], 90) is None


def test_the_booster_never_lowers_churn_as_recency_grows(fitted):
    train_part, enc, bundle = fitted
    xb = bundle.inputs(enc.encode_frame(train_part))[:300]
    j = bundle.input_columns.index("recency_days")
    grid = np.linspace(0.0, float(np.nanmax(xb[:, j])), 25)
    scores = []
    for value in grid:
        swept = xb.copy()
        swept[:, j] = value
        scores.append(bundle.boosters["main"].inplace_predict(swept))
    steps = np.diff(np.stack(scores, axis=1), axis=1)
    assert (steps >= -1e-7).all()
    # Not vacuous: recency does move the score.
    assert (steps > 1e-4).any()


def test_the_blend_keeps_its_weights_only_where_they_beat_the_rate():
    rng = np.random.default_rng(0)
    n = 3000
    x = np.column_stack([rng.exponential(60, n), rng.poisson(3, n), rng.gamma(2, 30, n)]).astype(np.float32)
    cols = ["recency_days", "frequency_365d", "monetary_365d"]
    signal = 1 / (1 + np.exp(-(0.03 * (x[:, 0] - 60) - 0.3 * (x[:, 1] - 3))))
    y = (rng.random(n) < signal).astype(int)
    rfm = fit_rfm(x, y, cols)
    raw = np.clip(signal + rng.normal(0, 0.05, n), 0.01, 0.99)
    z = blend_logits(raw, x, cols, rfm)
    weights, intercept = fit_blend(z, y)
    assert weights[0] > 0.5
    # Where the best weights are positive they are the logistic regression's (maximum likelihood, unpenalised).
    lr = LogisticRegression(C=1e6, max_iter=5000).fit(z, y)
    if (lr.coef_ > 0).all():
        np.testing.assert_allclose(weights, lr.coef_[0], atol=2e-3)
        assert intercept == pytest.approx(float(lr.intercept_[0]), abs=2e-3)
    # A score that ranks backwards gets weight 0, never a negative one (each input is a churn score).
    backwards = np.column_stack([z, -logit(signal) + rng.normal(0, 0.3, n)])
    weights, _ = fit_blend(backwards, y)
    assert weights[0] > 0.5 and weights[2] == 0.0
    assert LogisticRegression(C=1e6, max_iter=5000).fit(backwards, y).coef_[0][2] < 0  # not vacuous
    # Labels unrelated to the scores: the weights fitted to that noise are dropped, the rate is answered.
    noise = rng.permutation(y)
    weights, intercept = fit_blend(z, noise)
    assert weights == [0.0, 0.0]
    assert 1 / (1 + np.exp(-intercept)) == pytest.approx(noise.mean())


def test_backtest_shift_brings_the_year_ago_fit_to_its_targets_churn_rate_and_is_bounded():
    plan = YearAgo((pd.Timestamp("2023-02-07"), pd.Timestamp("2023-03-09")), pd.Timestamp("2023-06-07"), 0)

    def snapshots(rate: float, n: int = 1000) -> pd.DataFrame:
        rows = [(c, 0) for c in plan.train_cuts for _ in range(n)]
        rows += [(plan.target, int(i < rate * n)) for i in range(n)]
        return pd.DataFrame(rows, columns=["snapshot", "churned"])

    spread = np.random.default_rng(0).uniform(0.2, 0.6, 1000)
    shift, note = backtest_shift(plan, snapshots(0.55), lambda train, target: spread)
    assert np.mean(1 / (1 + np.exp(-(logit(spread) + shift)))) == pytest.approx(0.55, abs=1e-4)
    assert shift > 0 and "2023-06-07" in note and "0.5500" in note
    assert backtest_shift(plan, snapshots(0.99), lambda train, target: np.full(1000, 1e-4))[0] == SHIFT_BOUNDS[1]
    assert backtest_shift(plan, snapshots(0.0), lambda train, target: spread)[0] is None
