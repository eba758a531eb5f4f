"""One request's trouble stays its own: a timed-out request, a row that cannot be scored (no server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from features import scoring
from features.definitions import feature_set_version
from features.eligibility import Rule, compile_rule
from features.online_store import write_store
from features.settings import load_settings
from serving.coalesce import Coalescer
from serving.runtime import Item, Runtime
from serving.service import _logged
from tests.serving.conftest import AS_OF, build_bundles, feature_frame, write_manifest
from tests.serving.logged import read_decision


def test_a_request_that_times_out_does_not_fail_the_others_sharing_its_commit() -> None:
    async def main() -> list[object]:
        shared: Future[None] = Future()  # one commit for every request of a scoring batch
        waiting = [asyncio.ensure_future(_logged(shared)) for _ in range(3)]
        await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiting[0]), 0.01)
        waiting[0].cancel()  # the first request timed out (BentoML cancels its task)
        await asyncio.sleep(0.01)
        shared.set_result(None)  # the commit completes
        return await asyncio.gather(*waiting, return_exceptions=True)

    out = asyncio.run(main())
    assert isinstance(out[0], asyncio.CancelledError)
    assert out[1:] == [None, None]


@pytest.fixture(scope="module")
def bad_rule_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose offer catalog compares the text attribute ``attr_region`` with a number."""
    home = tmp_path_factory.mktemp("badrule")
    paths = build_bundles(home / "models")
    nbo = home / "models" / "next_best_offer"
    meta_file = nbo / "bundle.json"
    meta = json.loads(meta_file.read_text())
    meta["offers"][1]["eligible_if"] = "attr_region > 5"
    meta_file.write_text(json.dumps(meta))
    write_manifest(home, paths, {"churn": 1, "cltv": 1, "next_best_offer": 1})
    frame = feature_frame(6, seed=3)
    frame.insert(0, "customer_id", [f"c{i}" for i in range(6)])
    frame.loc[frame.index[3:], "attr_region"] = None  # c3..c5 have no region: their rule reads NaN, no error
    write_store(home / "online", frame, AS_OF, feature_set_version())
    return home


def _strict_rule(expression: object, known: object = None) -> Rule:
    """An eligibility rule that raises on a text value, as the rules once did: a row the service cannot score."""
    rule = compile_rule(expression, known)  # type: ignore[arg-type]
    if expression != "attr_region > 5":
        return rule

    def strict(row: Mapping[str, Any]) -> bool:
        if isinstance(row.get("attr_region"), str):
            raise ValueError(f"could not convert string to float: {row['attr_region']!r}")
        return rule(row)

    return strict


@pytest.fixture
def runtime_for(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Runtime]:
    # eligible_if itself now reads text as unknown (tests/features/test_eligibility.py), so the failure is planted.
    monkeypatch.setattr(scoring, "compile_rule", _strict_rule)
    return lambda home: Runtime(load_settings({"CXPREDICT_HOME": str(home), "CXPREDICT_API_KEYS": "k"}))


def test_a_row_that_cannot_be_scored_fails_alone_in_a_batch(
    bad_rule_home: Path, runtime_for: Callable[[Path], Runtime]
) -> None:
    rt = runtime_for(bad_rule_home)
    try:
        results = rt.personalize_many(["c0", "c3", "nope", "c4"])
        assert [r.get("error") for r in results] == ["scoring_failed", None, "unknown_customer", None]
        assert "ValueError" in results[0]["detail"]
        for r in (results[1], results[3]):
            assert read_decision(rt.decisions, r["decision_id"]) is not None  # answered and logged
    finally:
        rt.decisions.close()


def test_a_row_that_cannot_be_scored_fails_alone_among_coalesced_requests(
    bad_rule_home: Path, runtime_for: Callable[[Path], Runtime]
) -> None:
    rt = runtime_for(bad_rule_home)

    def handle(items: list[Item]) -> list[tuple[dict, Future[None]]]:
        answers, logged = rt.decide(items)
        return [(a, logged) for a in answers]

    coalescer = Coalescer(handle)

    async def main() -> list[object]:
        items = [rt.prepare(cid) for cid in ("c3", "c0", "c4")]
        return await asyncio.gather(*(coalescer.submit(i) for i in items), return_exceptions=True)

    try:
        out = asyncio.run(main())
        assert isinstance(out[1], ValueError)
        for answer, logged in (out[0], out[2]):
            logged.result(timeout=5)
            assert read_decision(rt.decisions, answer["decision_id"]) is not None
    finally:
        rt.decisions.close()
