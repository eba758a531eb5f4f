"""The Redis online store against a real Redis on 127.0.0.1:6379 (skipped with a reason when unreachable)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pandas as pd
import pytest

redis = pytest.importorskip("redis")

from features.settings import load_settings  # noqa: E402
from features.stores.factory import open_online_store, write_online_store  # noqa: E402
from features.stores.redis_store import POINTER, RedisOnlineStore, StoreMissing  # noqa: E402
from tests.conftest import redis_db  # noqa: E402

AS_OF = datetime(2024, 1, 1)
DB = 11


@pytest.fixture
def url() -> Iterator[str]:
    with redis_db(DB) as url:
        yield url


def test_factory_picks_the_backend(tmp_path, url):
    env = {"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_ONLINE_STORE": url}
    assert isinstance(open_online_store(load_settings(env)), RedisOnlineStore)
    assert type(open_online_store(load_settings({"CXPREDICT_HOME": str(tmp_path)}))).__name__ == "SQLiteOnlineStore"
    with pytest.raises(ValueError, match="redis://"):
        open_online_store(load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_ONLINE_STORE": "mysql://x"}))


def test_generations_switch_whole_and_old_ones_go(tmp_path, url):
    store = RedisOnlineStore(url)
    with pytest.raises(StoreMissing):
        store.get("a")
    settings = load_settings({"CXPREDICT_HOME": str(tmp_path), "CXPREDICT_ONLINE_STORE": url})
    write_online_store(settings, pd.DataFrame({"customer_id": ["a", "b"], "orders": [1, float("nan")]}), AS_OF, "fs1")
    first = store.generation()
    assert store.get("a") == {"orders": 1}
    assert store.get("b") == {"orders": None}
    assert store.get("zz") is None
    assert store.get_many(["a", "zz", "b"]) == {"a": {"orders": 1}, "b": {"orders": None}}
    assert store.metadata() == {
        "as_of": AS_OF.isoformat(),
        "feature_set_version": "fs1",
        "columns": ["orders"],
        "customers": 2,
    }
    write_online_store(settings, pd.DataFrame({"customer_id": ["b", "c"], "orders": [5, 6]}), AS_OF, "fs2")
    assert store.generation() != first
    assert store.get("a") is None and store.get_many(["b", "c"]) == {"b": {"orders": 5}, "c": {"orders": 6}}
    assert store.metadata()["feature_set_version"] == "fs2"
    client = redis.Redis.from_url(url)
    gen = store.generation()
    keys = {k.decode() for k in client.scan_iter("*")}
    assert keys == {POINTER, f"cxp:g:{gen}:meta", f"cxp:g:{gen}:row:b", f"cxp:g:{gen}:row:c"}
    assert store.forget(["b"]) == 1 and store.forget(["b"]) == 0
    assert store.metadata()["customers"] == 1
    assert store.get("b") is None and store.get("c") == {"orders": 6}
