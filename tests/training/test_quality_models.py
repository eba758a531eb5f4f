"""Calibration is checked (ECE on planted cases), the churn blend scores alike everywhere, CLTV's scale is applied."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.scoring import Bundle, Encoder
from training.calibration import expected_calibration_error, reliability_table
from training.churn_model import fit_rfm, shift_to_rate
from training.config import TrainConfig, XGBParams
from training.train import fit_churn, fit_cltv

CONFIG = TrainConfig(xgb=XGBParams(n_estimators=60, max_depth=3, learning_rate=0.1))


def test_ece_is_small_for_calibrated_and_large_for_shifted_probabilities():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, size=20_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    # Planted miscalibration: every customer 0.15 too high (clipped) is off by about 0.15.
    assert expected_calibration_error(y, np.clip(p + 0.15, 0, 1)) == pytest.approx(0.14, abs=0.03)
    table = reliability_table(y, p, bins=10)
    assert len(table) == 10 and table.customers.sum() == p.size
    assert (table.mean_predicted.diff().dropna() > 0).all()


def _churn_frame(n: int, seed: int, rates: list[float]) -> pd.DataFrame:
    """Snapshots with the same churn mechanism but a shifted base rate each (seasonality)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, shift in enumerate(rates):
        recency = rng.exponential(60, size=n)
        freq = rng.poisson(3, size=n).astype(float)
        noise = rng.normal(size=n)
        z = shift + 0.03 * (recency - 60) - 0.4 * (freq - 3) + 0.5 * noise
        churned = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(n)],
                    "snapshot": pd.Timestamp("2024-01-01") + pd.Timedelta(days=30 * k),
                    "recency_days": recency,
                    "frequency_365d": freq,
                    "monetary_365d": freq * 20 + rng.gamma(2, 10, size=n),
                    "attr_noise": noise,
                    "churned": churned,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_calibrated_churn_model_has_a_small_ece_on_a_planted_case_and_follows_the_mean_rate(tmp_path):
    # The newest snapshot (the calibration one) has a higher churn rate than the others; the holdout is drawn
    # at the mean shift of all snapshots, which the prior-shift correction aims at.
    frame = _churn_frame(2000, seed=1, rates=[-0.4, 0.0, -0.2, 0.6])
    encoder = Encoder.fit(frame.drop(columns=["customer_id", "snapshot", "churned"]))
    bundle = fit_churn(frame, CONFIG, encoder)
    hold = _churn_frame(6000, seed=2, rates=[0.0])
    p = Bundle.load(bundle.save(tmp_path / "churn"), check_feature_set=False).churn_probability(
        encoder.encode_frame(hold)
    )
    y = hold.churned.to_numpy()
    assert expected_calibration_error(y, p) < 0.04
    assert p.mean() == pytest.approx(y.mean(), abs=0.04)
    # Without the correction (calibrated at the newest snapshot's rate) the same model would be off.
    blend = bundle.meta["blend"]
    assert blend["calibration_rate"] > blend["target_rate"] + 0.05


def test_shift_to_rate_hits_the_mean_rate_and_the_rfm_regression_ranks_churners_first():
    z = np.random.default_rng(0).normal(0, 2, size=5000)
    d = shift_to_rate(z, 0.2)
    assert np.mean(1 / (1 + np.exp(-(z + d)))) == pytest.approx(0.2, abs=1e-6)
    frame = _churn_frame(3000, seed=3, rates=[0.0])
    x = Encoder.fit(frame.drop(columns=["customer_id", "snapshot", "churned"])).encode_frame(frame)
    rfm = fit_rfm(x, frame.churned.to_numpy(), Encoder.fit(frame.drop(columns=["customer_id"])).columns)
    assert rfm["coef"][0] > 0 and rfm["coef"][1] < 0  # older recency churns more, more orders churn less


def _spend_frame(n: int, seed: int, level: list[float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for k, lv in enumerate(level):
        m90 = rng.gamma(2, 50, size=n)
        spend = lv * m90 * rng.gamma(4, 0.25, size=n) * (rng.random(n) < 0.7)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(n)],
                    "snapshot": pd.Timestamp("2024-01-01") + pd.Timedelta(days=30 * k),
                    "monetary_90d": m90,
                    "spend_h": spend,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_cltv_total_scale_is_fitted_out_of_sample_recorded_and_applied(tmp_path):
    # Spend grows from snapshot to snapshot; the newest is 1.5x the older ones.
    frame = _spend_frame(3000, seed=4, level=[1.0, 1.0, 1.0, 1.5])
    encoder = Encoder.fit(frame.drop(columns=["customer_id", "snapshot", "spend_h"]))
    bundle = fit_cltv(frame, CONFIG, encoder, cltv_scale=4.0, method="btyd_ratio")
    scale = bundle.meta["spend_scale"]
    assert 1.25 < scale < 1.8
    assert "newest training snapshot" in bundle.meta["spend_scale_note"]
    loaded = Bundle.load(bundle.save(tmp_path / "cltv"), check_feature_set=False)
    x = encoder.encode_frame(frame.head(50))
    spend, value = loaded.spend(x)
    raw = np.maximum(loaded.boosters["main"].inplace_predict(x), 0.0)
    np.testing.assert_allclose(spend, raw * scale, rtol=1e-6)
    np.testing.assert_allclose(value, spend * 4.0, rtol=1e-6)
    # A single snapshot has nothing out of sample: no rescaling, and the note says so.
    one = fit_cltv(frame[frame.snapshot == frame.snapshot.min()], CONFIG, encoder, 4.0, "btyd_ratio")
    assert one.meta["spend_scale"] == 1.0 and "not rescaled" in one.meta["spend_scale_note"]
