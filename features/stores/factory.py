"""Choosing the online store from the settings: embedded SQLite by default, Redis for a ``redis://`` URL."""

from __future__ import annotations

from typing import Any

from features.online_store import OnlineStore, SQLiteOnlineStore
from features.settings import Settings


def open_online_store(settings: Settings) -> OnlineStore:
    """The online store the settings name (``CXPREDICT_ONLINE_STORE``).

    Raises:
        ValueError: the URL's scheme is not one cxpredict knows.
    """
    url = settings.online_store_url
    if not url:
        return SQLiteOnlineStore(settings.online_store_dir)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from features.stores.redis_store import RedisOnlineStore

        return RedisOnlineStore(url)
    raise ValueError(f"CXPREDICT_ONLINE_STORE={url!r}: expected redis://host:port/db (or unset for the embedded store)")


def write_online_store(settings: Settings, frame: Any, as_of: Any, feature_set_version: str) -> None:
    """Write a new generation into the configured store and switch to it atomically."""
    if settings.online_store_url:
        store = open_online_store(settings)
        store.write(frame, as_of, feature_set_version)  # type: ignore[attr-defined]
        return
    from features.online_store import write_store

    write_store(settings.online_store_dir, frame, as_of, feature_set_version)
