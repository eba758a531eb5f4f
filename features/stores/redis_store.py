"""Online store in Redis (``CXPREDICT_ONLINE_STORE=redis://host:port/db``).

Each materialization writes a new *generation*: rows under ``cxp:g:<gen>:row:<customer_id>`` and metadata under
``cxp:g:<gen>:meta``, then switches the pointer ``cxp:current`` in one MULTI transaction and deletes the older
generation's keys. A reader resolves the pointer and the row in one round trip (a tiny Lua script), so it never
mixes two generations and never sees half of one.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import redis

from features.online_store import _clean, decode_row
from features.stores import OnlineStoreUnavailable, safe_url

POINTER = "cxp:current"
PREFIX = "cxp:g:"
#: Rows written per pipeline flush while materializing.
WRITE_CHUNK = 5_000

# Pointer and row(s) read atomically in one round trip: a generation switch cannot fall between them.
_GET = """
local gen = redis.call('GET', KEYS[1])
if not gen then return {false} end
local out = {gen}
for i = 1, #ARGV do out[i + 1] = redis.call('GET', 'cxp:g:' .. gen .. ':row:' .. ARGV[i]) end
return out
"""


class StoreMissing(FileNotFoundError):  # noqa: N818 - reads better at the raise site
    """No generation has been materialized into this Redis database yet."""


def _row_key(gen: str, customer_id: str) -> str:
    return f"{PREFIX}{gen}:row:{customer_id}"


def _meta_key(gen: str) -> str:
    return f"{PREFIX}{gen}:meta"


class RedisOnlineStore:
    """Reader and writer of the Redis online store.

    Args:
        url: ``redis://host:port/db``.
    """

    def __init__(self, url: str):
        self.url = url
        # Bounded waits: a Redis that is down or hung fails a lookup (a 503) instead of holding the request.
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._get = self._redis.register_script(_GET)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Turn "cannot connect" into :class:`OnlineStoreUnavailable` naming the store (never its password)."""
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise OnlineStoreUnavailable(f"online store {safe_url(self.url)} is unreachable: {exc}") from None

    def generation(self) -> str | None:
        """Id of the current generation (changes at every materialization), or None when there is none.

        Raises:
            OnlineStoreUnavailable: Redis cannot be reached.
        """
        with self._reachable():
            gen = self._redis.get(POINTER)
        return gen.decode() if gen else None

    def _lookup(self, ids: list[str]) -> tuple[str, list[bytes | None]]:
        with self._reachable():
            result = self._get(keys=[POINTER], args=ids)
        if not result or result[0] is None:
            raise StoreMissing(f"online store {safe_url(self.url)} is empty: run `cxpredict features materialize`")
        return result[0].decode(), list(result[1:]) + [None] * (len(ids) - len(result) + 1)

    def get(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's latest feature row, or None when unknown (one round trip)."""
        _, rows = self._lookup([customer_id])
        return decode_row(rows[0]) if rows[0] is not None else None

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Rows of the known customers among ``customer_ids`` (one round trip)."""
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return {}
        _, rows = self._lookup(ids)
        return {cid: decode_row(raw) for cid, raw in zip(ids, rows, strict=False) if raw is not None}

    def metadata(self) -> dict[str, Any]:
        """``as_of``, ``feature_set_version``, ``columns`` and ``customers`` of the current generation."""
        gen = self.generation()
        if gen is None:
            raise StoreMissing(f"online store {safe_url(self.url)} is empty: run `cxpredict features materialize`")
        with self._reachable():
            raw = self._redis.hgetall(_meta_key(gen))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def forget(self, customer_ids: Iterable[str]) -> int:
        """Erase customers' rows from every generation in the database; the number of keys deleted.

        Generations are found by their metadata keys, so the customer id is never used as a key pattern.
        """
        ids = list(dict.fromkeys(str(c) for c in customer_ids))
        if not ids:
            return 0
        gens = {key.decode()[len(PREFIX) : -len(":meta")] for key in self._redis.scan_iter(match=f"{PREFIX}*:meta")}
        current = self.generation()
        if current is not None:
            gens.add(current)
        erased = 0
        for gen in gens:
            keys = [_row_key(gen, cid) for cid in ids]
            here = sum(int(self._redis.delete(*keys[i : i + 1000])) for i in range(0, len(keys), 1000))
            if gen == current and here and self._redis.hexists(_meta_key(gen), "customers"):
                self._redis.hincrby(_meta_key(gen), "customers", -here)  # the count is integer JSON text
            erased += here
        return erased

    def write(self, frame: Any, as_of: datetime, feature_set_version: str) -> str:
        """Write a new generation from a feature frame, switch to it atomically and drop the older ones.

        Returns:
            The new generation id.
        """
        gen = f"{time.time_ns():x}{secrets.token_hex(4)}"
        columns = [c for c in frame.columns if c != "customer_id"]
        ids = frame["customer_id"].astype(str).tolist()
        records = frame[columns].to_dict("records")
        pipe = self._redis.pipeline(transaction=False)
        for i, (cid, rec) in enumerate(zip(ids, records, strict=True)):
            pipe.set(_row_key(gen, cid), json.dumps({k: _clean(v) for k, v in rec.items()}))
            if (i + 1) % WRITE_CHUNK == 0:
                pipe.execute()
        meta = {"as_of": as_of.isoformat(), "feature_set_version": feature_set_version, "columns": columns}
        meta["customers"] = len(ids)
        pipe.hset(_meta_key(gen), mapping={k: json.dumps(v) for k, v in meta.items()})
        pipe.execute()
        with self._redis.pipeline(transaction=True) as switch:  # MULTI/EXEC: the pointer moves last, in one step
            switch.set(POINTER, gen)
            switch.execute()
        self._drop_other_generations(gen)
        return gen

    def _drop_other_generations(self, keep: str) -> None:
        for key in self._redis.scan_iter(match=f"{PREFIX}*", count=1000):
            if not key.decode().startswith(f"{PREFIX}{keep}:"):
                self._redis.unlink(key)

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()
