"""The numpy forest predicts exactly what XGBoost predicts (every bit), and declines what it cannot reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from features import forest as forest_module
from features.forest import Forest, ForestStack
from features.kinds import new_bundle
from features.scoring import SMALL_BATCH, Predictor
from tests.features.boosters import train, unsupported


def _data(rows: int, cols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(rows, cols)) * rng.choice([0.01, 1.0, 100.0], size=cols)).astype(np.float32)
    x[:, 0] = rng.integers(0, 4, size=rows)  # ties at thresholds
    x[rng.random(x.shape) < 0.15] = np.nan
    y = np.abs(np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * 0.5 + rng.normal(size=rows)) + 0.1
    return x, y


@pytest.mark.parametrize(
    "objective", ["binary:logistic", "reg:logistic", "reg:tweedie", "count:poisson", "reg:gamma", "reg:squarederror"]
)
@pytest.mark.parametrize("depth", [1, 3, 8])
def test_predictions_equal_xgboost_in_every_bit(objective: str, depth: int) -> None:
    x, y = _data(800, 7, seed=depth)
    if objective in ("binary:logistic", "reg:logistic"):
        y = (y > np.median(y)).astype(float)
    booster = train({"objective": objective, "max_depth": depth, "eta": 0.3}, x, y, 40)
    forest = Forest.from_booster(booster)
    assert forest is not None and 1 <= forest.depth <= depth
    probe, _ = _data(1200, 7, seed=100 + depth)
    probe[:5] = np.nan  # every default direction
    # Rows made of the split thresholds themselves: equal goes right, as in XGBoost.
    thresholds = booster.trees_to_dataframe()["Split"].dropna().to_numpy(np.float32)
    probe[5:25] = np.resize(thresholds, (20, 7))
    for start in range(0, len(probe), 3):  # a few rows at a time, as online
        rows = probe[start : start + 3]
        np.testing.assert_array_equal(forest.predict(rows), booster.inplace_predict(rows))
    np.testing.assert_array_equal(forest.margins(probe), booster.inplace_predict(probe, predict_type="margin"))


def test_a_forest_that_would_differ_in_one_bit_is_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _data(400, 4, seed=3)
    booster = train({"objective": "binary:logistic", "max_depth": 3}, (x > 0).astype(np.float32), y > 1, 40)
    assert Forest.from_booster(booster) is not None
    right = forest_module._link_candidates("binary:logistic", np.float32(0.5))
    assert right == [np.float32(0.0), np.float32(0.0)]
    # A base margin one float32 step off changes some predictions in the last bit: the probe check must notice.
    real = forest_module._link_candidates
    monkeypatch.setattr(
        forest_module,
        "_base_margins",
        lambda objective, base: [np.nextafter(m, np.float32(np.inf)) for m in real(objective, base)],
    )
    assert Forest.from_booster(booster) is None


def test_declines_models_it_cannot_reproduce() -> None:
    x, y = _data(300, 3, seed=1)
    for name, booster in unsupported(x, y).items():
        assert Forest.from_booster(booster) is None, name
    ranking = xgb.train(
        {"objective": "rank:pairwise", "nthread": 1},
        xgb.DMatrix(np.nan_to_num(x), label=np.arange(len(y)) % 3, group=[100, 100, 100]),
        5,
    )
    assert Forest.from_booster(ranking) is None  # no known transform


def test_the_predictor_uses_the_forest_for_small_batches_only() -> None:
    x, y = _data(500, 6, seed=9)
    booster = train({"objective": "binary:logistic", "max_depth": 4}, x, (y > np.median(y)).astype(float), 40)
    predictor = Predictor(booster)
    predictor.prepare_small_batches()
    assert predictor._forest is not None
    calls: list[int] = []

    class Spy:
        n_features = predictor._forest.n_features

        def __init__(self, forest: Forest) -> None:
            self.forest = forest

        def predict(self, rows: np.ndarray) -> np.ndarray:
            calls.append(rows.shape[0])
            return self.forest.predict(rows)

    predictor._forest = Spy(predictor._forest)  # type: ignore[assignment]
    probe, _ = _data(SMALL_BATCH + 3, 6, seed=10)
    for n in range(1, SMALL_BATCH + 4):
        np.testing.assert_array_equal(predictor.predict(probe[:n]), booster.inplace_predict(probe[:n]))
    assert calls == list(range(1, SMALL_BATCH + 1))
    with pytest.raises(ValueError, match="shape mismatch"):
        predictor.predict(np.zeros((1, 3), dtype=np.float32))  # wrong width: XGBoost's public API refuses it


def test_a_stack_of_forests_predicts_each_as_xgboost_does() -> None:
    """Boosters of different objectives, depths and sizes walked as one stack: each one's numbers in every bit."""
    x, y = _data(600, 7, seed=5)
    boosters = [
        train({"objective": "reg:squarederror", "max_depth": 2, "eta": 0.3}, x, y, 25),
        train({"objective": "binary:logistic", "max_depth": 6, "eta": 0.3}, x, (y > np.median(y)).astype(float), 40),
        train({"objective": "reg:tweedie", "max_depth": 4, "eta": 0.3}, x, y, 10),
    ]
    forests = [Forest.from_booster(b) for b in boosters]
    assert all(f is not None for f in forests)
    stack = ForestStack.of(forests)  # type: ignore[arg-type]
    probe, _ = _data(300, 7, seed=77)
    for start in range(0, len(probe), SMALL_BATCH):
        rows = probe[start : start + SMALL_BATCH]
        for got, booster in zip(stack.predict_each(rows), boosters, strict=True):
            np.testing.assert_array_equal(got, booster.inplace_predict(rows))


def test_a_bundle_predicts_several_boosters_at_once_as_one_by_one() -> None:
    """Bundle.predict_many equals each booster's prediction, through the stack (few rows) and XGBoost (many)."""
    from features.scoring import Encoder

    x, y = _data(400, 7, seed=9)
    params = {"objective": "reg:squarederror"}
    boosters = {("main" if i == 0 else f"b{i}"): train({**params, "max_depth": 1 + i}, x, y + i, 15) for i in range(3)}
    bundle = new_bundle(kind="cltv", meta={}, encoder=Encoder([f"f{i}" for i in range(7)], {}), boosters=boosters)
    bundle.prepare_online()
    for rows in (x[:1], x[:SMALL_BATCH], x[:50]):
        got = bundle.predict_many(list(boosters), rows)
        for g, b in zip(got, boosters.values(), strict=True):
            np.testing.assert_array_equal(g, b.inplace_predict(rows))
    assert len(bundle._stacks) == 1  # built once, for the small batches only


def test_a_base_margin_one_unit_off_the_computed_link_is_found() -> None:
    """XGBoost's own float32 logit of ``base_score`` can sit one unit in the last place from both computed ones."""
    x, y = _data(400, 5, seed=3)
    labels = (y > np.median(y)).astype(float)
    booster = train({"objective": "binary:logistic", "max_depth": 3, "base_score": 0.53793883}, x, labels, 20)
    forest = Forest.from_booster(booster)
    assert forest is not None
    assert forest.base_margin not in forest_module._link_candidates("binary:logistic", np.float32(0.53793883))
    probe, _ = _data(300, 5, seed=4)
    for start in range(0, len(probe), SMALL_BATCH):
        rows = probe[start : start + SMALL_BATCH]
        np.testing.assert_array_equal(forest.predict(rows), booster.inplace_predict(rows))
