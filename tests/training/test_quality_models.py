"""Calibration is checked (ECE on planted cases), the churn blend scores alike everywhere, CLTV's scale is applied."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from features.kinds import open_bundle
from features.scoring import Encoder
from training.backtest import History
from training.calibration import expected_calibration_error, reliability_table
from training.churn_model import fit_rfm, shift_to_rate
from training.config import TrainConfig, XGBParams
from training.train import fit_churn, fit_cltv

CONFIG = TrainConfig(xgb=XGBParams(n_estimators=60, max_depth=3, learning_rate=0.1))
#: Training cut-offs from February to July (label windows to October) and the target H days after the newest.
SEASON_CUTS = [pd.Timestamp("2024-02-06") + pd.Timedelta(days=30 * k) for k in range(6)]
SEASON_TARGET = SEASON_CUTS[-1] + pd.Timedelta(days=90)


def _recording_history(
    build: Callable[[list[pd.Timestamp]], pd.DataFrame],
    asked: list[pd.Timestamp],
    min_history_days: int,
    start: str = "2022-11-01",
) -> History:
    """A back-test's history whose snapshots ``build`` makes; every cut-off asked for is added to ``asked``."""

    def snapshots_at(cuts):
        asked.extend(cuts)
        return build(list(cuts))

    return History(pd.Timestamp(start), min_history_days, snapshots_at)


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
    p = open_bundle(bundle.save(tmp_path / "churn"), check_feature_set=False).churn_probability(
        encoder.encode_frame(hold)
    )
    y = hold.churned.to_numpy()
    assert expected_calibration_error(y, p) < 0.04
    assert p.mean() == pytest.approx(y.mean(), abs=0.04)
    # Without the correction (calibrated at the newest snapshot's rate) the same model would be off.
    blend = bundle.meta.blend
    assert blend["calibration_rate"] > blend["target_rate"] + 0.05


def _seasonal_churn(n: int, seed: int, cuts: list[pd.Timestamp]) -> pd.DataFrame:
    """Snapshots at ``cuts`` whose churn rate follows the calendar: most churn in windows starting in autumn."""
    rate_shift = {c: 1.2 * np.cos(2 * np.pi * (pd.Timestamp(c).dayofyear - 290) / 365.25) for c in cuts}
    frames = [_churn_frame(n, seed + k, [rate_shift[c]]).assign(snapshot=pd.Timestamp(c)) for k, c in enumerate(cuts)]
    return pd.concat(frames, ignore_index=True)


def test_churn_back_test_a_year_earlier_moves_the_rate_to_the_targets_season(tmp_path):
    # Training windows start from February to July; the target window starts in October, the churn season. The
    # mean rate of the training snapshots is too low there; the same fit a year earlier was as low, by as much.
    cuts, target = SEASON_CUTS, SEASON_TARGET
    frame = _seasonal_churn(2000, seed=10, cuts=cuts)
    hold = _seasonal_churn(6000, seed=50, cuts=[target])
    encoder = Encoder.fit(frame.drop(columns=["customer_id", "snapshot", "churned"]))
    asked: list[pd.Timestamp] = []
    history = _recording_history(lambda at: _seasonal_churn(2000, seed=100 + len(asked), cuts=at), asked, 30)
    shifted = open_bundle(fit_churn(frame, CONFIG, encoder, history).save(tmp_path / "c"), check_feature_set=False)
    assert max(asked) + pd.Timedelta(days=90) <= target
    plain = fit_churn(frame, CONFIG, encoder)
    x, y = encoder.encode_frame(hold), hold.churned.to_numpy()
    p_shifted, p_plain = shifted.churn_probability(x), plain.churn_probability(x)
    assert p_shifted.mean() == pytest.approx(y.mean(), abs=0.02)
    assert p_plain.mean() < y.mean() - 0.05
    assert expected_calibration_error(y, p_shifted) < expected_calibration_error(y, p_plain) - 0.03
    assert shifted.meta.blend["season_shift"] > 0 and "churn logit +" in shifted.meta.blend["note"]
    assert plain.meta.blend["season_shift"] == 0.0 and "no back-test" in plain.meta.blend["note"]


def test_shift_to_rate_hits_the_mean_rate_and_the_rfm_regression_ranks_churners_first():
    z = np.random.default_rng(0).normal(0, 2, size=5000)
    d = shift_to_rate(z, 0.2)
    assert np.mean(1 / (1 + np.exp(-(z + d)))) == pytest.approx(0.2, abs=1e-6)
    frame = _churn_frame(3000, seed=3, rates=[0.0])
    x = Encoder.fit(frame.drop(columns=["customer_id", "snapshot", "churned"])).encode_frame(frame)
    rfm = fit_rfm(x, frame.churned.to_numpy(), Encoder.fit(frame.drop(columns=["customer_id"])).columns)
    assert rfm["coef"][0] > 0 and rfm["coef"][1] < 0  # older recency churns more, more orders churn less


def _season(days: pd.DatetimeIndex) -> np.ndarray:
    """A yearly spend pattern: a gentle wave and a peak in the last five weeks of the year."""
    doy = days.dayofyear.to_numpy()
    return (1.0 + 0.2 * np.cos(2 * np.pi * (doy - 15) / 365.25)) * np.where(doy >= 330, 2.2, 1.0)


def _window_level(start: pd.Timestamp, days: int = 90) -> float:
    return float(_season(pd.date_range(start, periods=days, freq="D")).mean())


def _spend_frame(n: int, seed: int, cuts: list[pd.Timestamp]) -> pd.DataFrame:
    """Snapshots whose spend over the next 90 days follows the season of that window (same customers' habits)."""
    rng = np.random.default_rng(seed)
    frames = []
    for cut in cuts:
        m90 = rng.gamma(2, 50, size=n)
        spend = _window_level(cut) * m90 * rng.gamma(4, 0.25, size=n) * (rng.random(n) < 0.7)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": [f"c{i}" for i in range(n)],
                    "snapshot": cut,
                    "monetary_90d": m90,
                    "spend_h": spend,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _history(start: str, asked: list[pd.Timestamp]) -> History:
    """Snapshots at any cut-off from the same seasonal business; records what was asked for."""
    return _recording_history(lambda at: _spend_frame(3000, seed=len(asked), cuts=at), asked, 60, start)


def test_cltv_total_follows_a_planted_season_recorded_and_applied(tmp_path):
    # Training windows from February to October; the target window holds the year-end peak. The same fit a year
    # earlier missed that peak by as much, which sets the level: recovered within 6%.
    cuts, target = SEASON_CUTS, SEASON_TARGET
    frame = _spend_frame(3000, seed=4, cuts=cuts)
    hold = _spend_frame(3000, seed=5, cuts=[target])
    encoder = Encoder.fit(frame.drop(columns=["customer_id", "snapshot", "spend_h"]))
    asked: list[pd.Timestamp] = []
    bundle = fit_cltv(frame, CONFIG, encoder, 4.0, "btyd_ratio", history=_history("2022-11-01", asked))
    # Only the snapshots a year earlier were read, and every one of their label windows ends before the target.
    assert sorted(asked) == [c - pd.Timedelta(days=364) for c in [*cuts, target]]
    assert max(asked) + pd.Timedelta(days=90) <= target
    loaded = open_bundle(bundle.save(tmp_path / "cltv"), check_feature_set=False)
    x = encoder.encode_frame(hold)
    spend, value = loaded.spend(x)
    truth = hold.spend_h.sum()
    assert spend.sum() == pytest.approx(truth, rel=0.06)
    raw = np.maximum(loaded.boosters["main"].inplace_predict(x), 0.0)
    assert raw.sum() < 0.8 * truth  # without the seasonal level the total falls short
    meta = loaded.meta
    assert meta.spend_scale == pytest.approx(meta.spend_balance * meta.spend_season) and meta.spend_season > 1.2
    np.testing.assert_allclose(spend, raw * meta.spend_scale, rtol=1e-6)
    # The value over a year holds every season: it stays the BG/NBD ratio times the balanced, unseasoned spend.
    np.testing.assert_allclose(value, raw * meta.spend_balance * 4.0, rtol=1e-5)
    assert "season x" in loaded.meta.spend_scale_note and f"{target - pd.Timedelta(days=364):%Y-%m-%d}" in (
        loaded.meta.spend_scale_note
    )
    # Without a year of history before the target nothing is known about the season: factor 1, nothing read.
    asked.clear()
    short = fit_cltv(frame, CONFIG, encoder, 4.0, "btyd_ratio", history=_history("2023-12-01", asked))
    assert short.meta.spend_season == 1.0 and "no back-test" in short.meta.spend_scale_note
    assert short.meta.spend_scale == short.meta.spend_balance
    assert asked == []
    assert fit_cltv(frame, CONFIG, encoder, 4.0, "btyd_ratio").meta.spend_season == 1.0
    # Year-ago snapshots thinner than a training snapshot may be are not fitted on either.
    full = _history("2022-11-01", asked)
    thin = History(full.start, full.min_history_days, full.snapshots_at, min_customers=5000)
    level = fit_cltv(frame, CONFIG, encoder, 4.0, "btyd_ratio", history=thin).meta
    assert level.spend_season == 1.0 and "3000 customers in the snapshot" in level.spend_scale_note
