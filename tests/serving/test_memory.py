"""A reload gives the old model generation's memory back once the last request on it is done (no timing here).

The step it removes is measured by benchmarks/soak.py (docs/benchmarks.md, "Soak").
"""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import pytest

from features.definitions import feature_set_version
from features.online_store import write_store
from features.settings import load_settings
from serving import memory
from serving.runtime import Runtime
from tests.serving.conftest import AS_OF, build_bundles, feature_frame, write_manifest


def test_the_old_generation_is_released_once_no_request_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: trims.append(1))
    home = tmp_path / "home"
    home.mkdir()
    write_manifest(home, build_bundles(tmp_path / "v1"), {"churn": 1, "cltv": 1, "next_best_offer": 1})
    customers = feature_frame(5, seed=3)
    customers.insert(0, "customer_id", [f"c{i}" for i in range(5)])
    write_store(home / "online", customers, AS_OF, feature_set_version())
    rt = Runtime(load_settings({"CXPREDICT_HOME": str(home), "CXPREDICT_API_KEYS": "k"}))
    # As the service does after start-up: what is loaded by now is kept out of every later GC pass, so the old
    # generation must become unreachable by reference counting alone.
    gc.collect()
    gc.freeze()
    try:
        rt.personalize("c1")
        old_churn = weakref.ref(rt.models.bundles["churn"])
        in_flight = rt.models  # a request that started on the old generation and is still being answered
        write_manifest(home, build_bundles(tmp_path / "v2", seed=1), {"churn": 2, "cltv": 2, "next_best_offer": 2})
        assert rt.maybe_reload(force=True) and rt.models.versions["churn"] == 2
        rt.maybe_reload(force=True)
        assert trims == [] and rt.retired.pending() == 1 and old_churn() is not None  # still in use: kept
        del in_flight  # that request is answered
        assert old_churn() is None  # nothing else holds it, no GC pass needed
        rt.maybe_reload(force=True)
        assert trims == [1] and rt.retired.pending() == 0  # its memory handed back, once
        rt.maybe_reload(force=True)
        assert trims == [1]
        assert rt.personalize("c2")["model_versions"]["churn"] == 2
    finally:
        gc.unfreeze()
        rt.decisions.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_freed_memory_is_handed_back_through_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert memory.release_freed_memory() is True
