"""Online store backends beyond the embedded SQLite one, and the factory that picks one from the settings."""

from __future__ import annotations


class OnlineStoreUnavailable(ConnectionError):  # noqa: N818 - reads better at the raise site
    """The online store's server cannot be reached; the message names it (URL without a password)."""


def safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
