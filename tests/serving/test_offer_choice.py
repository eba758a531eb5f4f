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
