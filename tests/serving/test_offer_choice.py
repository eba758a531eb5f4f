"""A personalize answer shows no offer where none pays, says why, and logs the decision as no offer."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.online_store import write_store
from features.settings import load_settings
from serving.decision_log import SQLiteDecisionLog
from serving.runtime import Runtime
from tests.serving.conftest import AS_OF, build_bundles, feature_frame, write_manifest
from tests.serving.logged import read_decision


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_bundles(tmp_path_factory.mktemp("bundles"))


def test_no_offer_is_shown_where_none_pays(tmp_path: Path, bundles: dict[str, Path]) -> None:
    from features.definitions import feature_set_version

    write_manifest(tmp_path, bundles, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    frame = feature_frame(40, seed=5)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(40)])
    write_store(tmp_path / "online", frame, AS_OF, feature_set_version())
    runtime = Runtime(load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_API_KEYS": "k"}))
    offers = runtime.models.bundles["next_best_offer"].meta.offers
    answers = [runtime.personalize(f"c{i}")["next_best_offer"] for i in range(40)]
    paying = [a for a in answers if a["ranking"][0]["expected_value"] > 0]
    assert paying and all(a["offer_id"] == a["ranking"][0]["offer_id"] and "reason" not in a for a in paying)
    assert len(paying) < len(answers)  # and some customers already get none

    for offer in offers:  # now no offer can pay for itself
        offer["cost"] = 1_000.0
    answers = [runtime.personalize(f"c{i}") for i in range(40)]
    for answer in answers:
        nbo = answer["next_best_offer"]
        assert nbo["available"] is True and nbo["offer_id"] is None and nbo["expected_value"] == 0.0
        assert nbo["reason"] == "no_positive_value" and "showing none is worth more" in nbo["detail"]
        assert nbo["ranking"] and all(r["expected_value"] < 0 for r in nbo["ranking"])  # still shown to the client
    log: SQLiteDecisionLog = runtime.decisions  # type: ignore[assignment]
    assert all(read_decision(log, a["decision_id"])["offer_id"] == "none" for a in answers)
    log.close()


def test_a_spend_model_answers_in_spend_and_its_answer_validates(tmp_path: Path, bundles: dict[str, Path]) -> None:
    """A model of spend (acceptance x order value) ranks by the uplift in spend, money already: no x value."""
    import numpy as np
    import xgboost as xgb
    from pydantic import TypeAdapter

    from features.kinds import open_bundle
    from features.scoring import design_matrix
    from serving.schemas import PersonalizeResponse
    from tests.serving.conftest import OFFERS

    nbo = open_bundle(bundles["next_best_offer"])
    frame = feature_frame(300, seed=0)
    x = nbo.encoder.encode_frame(frame)
    # Orders of 40 without an offer, 80 under discount10 and 20 under loyalty (order value by arm only).
    arm = np.random.default_rng(0).integers(-1, len(OFFERS), len(frame))
    label = np.array([40.0, 80.0, 20.0])[arm + 1]
    params = {"objective": "reg:squarederror", "max_depth": 2, "eta": 0.5, "base_score": 40.0}
    order = xgb.train(params, xgb.DMatrix(design_matrix(x, len(OFFERS), arm), label=label), 20)
    meta = nbo.meta.model_copy(update={"outcome": "revenue", "method": "spend uplift"})
    spend = type(nbo)(kind=nbo.kind, meta=meta, encoder=nbo.encoder, boosters={**nbo.boosters, "order_value": order})
    paths = {**bundles, "next_best_offer": spend.save(tmp_path / "spend_nbo")}
    write_manifest(tmp_path, paths, {"churn": 1, "cltv": 1, "next_best_offer": 2})
    from features.definitions import feature_set_version

    customers = feature_frame(30, seed=5)
    customers.insert(0, "customer_id", [f"c{i}" for i in range(30)])
    write_store(tmp_path / "online", customers, AS_OF, feature_set_version())
    runtime = Runtime(load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_API_KEYS": "k"}))
    served = runtime.models.bundles["next_best_offer"]
    base, uplift = served.acceptance_outcomes(served.encoder.encode_frame(customers))
    adapter = TypeAdapter(PersonalizeResponse)
    for i in range(30):
        answer = runtime.personalize(f"c{i}")
        adapter.validate_python(answer)
        part = answer["next_best_offer"]
        assert part["method"] == "spend uplift"
        for r in part["ranking"]:
            j = [o["offer_id"] for o in OFFERS].index(r["offer_id"])
            p_offer, p_none = base[i] + uplift[i, j], base[i]
            # Spend uplift: P(accept | offer) x its order value - P(accept | none) x 40, minus the cost.
            expected = p_offer * (80.0 if j == 0 else 20.0) - p_none * 40.0
            assert r["uplift"] == pytest.approx(expected, rel=0.05, abs=0.5)
            assert r["expected_value"] == pytest.approx(r["uplift"] - OFFERS[j]["cost"], abs=1e-6)
            assert r["p_accept"] == pytest.approx(p_offer, abs=1e-6)  # the acceptance is still reported
    runtime.decisions.close()  # type: ignore[attr-defined]
