"""API keys: named keys with scopes, kept only as SHA-256 digests, reloaded without a restart, and rate-limited.

Where keys come from (all of them are accepted together):

* ``CXPREDICT_API_KEYS``, comma-separated entries; each entry is ``KEY`` (a plain key: both scopes, named
  ``key-<first 8 hex of its SHA-256>``), ``NAME:KEY`` (both scopes) or ``NAME:KEY:SCOPE+SCOPE``;
* ``$CXPREDICT_HOME/api_keys.txt``, one entry per line in the same form (``#`` starts a comment), where ``KEY``
  may also be ``sha256=<64 hex digits>`` so the file need not hold the key itself. The service re-reads the file
  when it changes (checked once a second): adding or revoking a key needs no restart;
* only when ``CXPREDICT_API_KEYS`` is unset and the file is absent: the key ``cxpredict demo`` stored (name
  ``demo``).

``CXPREDICT_API_KEYS`` set but empty is refused at start (:class:`serving.startup.StartupError`): an operator who
cleared the variable meant "no keys", not "the demo key". Scopes: ``score`` (the scoring routes) and ``feedback``
(``/v1/feedback``). A key's *name*, never the key, is recorded with each decision it obtained.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from features.settings import Settings
from serving.startup import StartupError

log = logging.getLogger(__name__)

SCORE = "score"
FEEDBACK = "feedback"
SCOPES = frozenset({SCORE, FEEDBACK})
#: The keys file under ``CXPREDICT_HOME``.
KEYS_FILE = "api_keys.txt"
#: Paths any client may call without a key; everything else (a route added later included) needs one.
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
#: Seconds between two checks of the keys file.
RELOAD_SECONDS = 1.0

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_DIGEST = re.compile(r"sha256=([0-9a-fA-F]{64})")


@dataclass(frozen=True)
class ApiKey:
    """One accepted key.

    Attributes:
        name: What the decision log records (never the key).
        digest: SHA-256 of the key.
        scopes: What it may call (:data:`SCOPES`).
    """

    name: str
    digest: bytes
    scopes: frozenset[str]


def digest(key: str) -> bytes:
    """The SHA-256 digest a key is kept as."""
    return hashlib.sha256(key.encode()).digest()


def parse_entry(entry: str, where: str) -> ApiKey:
    """One ``KEY``, ``NAME:KEY`` or ``NAME:KEY:SCOPE+SCOPE`` entry.

    Raises:
        StartupError: the entry is malformed (the message names ``where`` it came from, never the key).
    """
    parts = entry.strip().split(":")
    if len(parts) > 3 or not all(p.strip() for p in parts):
        raise StartupError(f"{where}: an API key entry must be KEY, NAME:KEY or NAME:KEY:SCOPE+SCOPE")
    if len(parts) == 1:
        name, secret, scopes = "", parts[0].strip(), set(SCOPES)
    else:
        name, secret = parts[0].strip(), parts[1].strip()
        scopes = {s.strip() for s in parts[2].split("+")} if len(parts) == 3 else set(SCOPES)
    hashed = _DIGEST.fullmatch(secret)
    value = bytes.fromhex(hashed.group(1)) if hashed else digest(secret)
    name = name or f"key-{value.hex()[:8]}"
    if not _NAME.fullmatch(name):
        raise StartupError(f"{where}: key name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    unknown = sorted(scopes - SCOPES)
    if unknown or not scopes:
        raise StartupError(f"{where}: key {name!r} has unknown scope(s) {unknown}; scopes are {sorted(SCOPES)}")
    return ApiKey(name, value, frozenset(scopes))


def _unique(keys: list[ApiKey]) -> tuple[ApiKey, ...]:
    seen: dict[str, ApiKey] = {}
    for key in keys:
        if key.name in seen and seen[key.name] != key:
            raise StartupError(f"API key name {key.name!r} is used for two different keys or scopes")
        seen[key.name] = key
    return tuple(seen.values())


def keys_file(settings: Settings) -> Path:
    """``$CXPREDICT_HOME/api_keys.txt``."""
    return Path(settings.home) / KEYS_FILE


def load_keys(settings: Settings) -> tuple[ApiKey, ...]:
    """Every accepted key (see the module docstring for the sources and their order).

    Raises:
        StartupError: ``CXPREDICT_API_KEYS`` is set but empty, an entry is malformed, or there is no key at all.
    """
    if settings.api_keys is not None and not settings.api_keys:
        raise StartupError(
            "CXPREDICT_API_KEYS is set but holds no key: set it to comma-separated keys (KEY, NAME:KEY or "
            f"NAME:KEY:score+feedback), list keys in {keys_file(settings)}, or unset it to use the demo key"
        )
    keys = [parse_entry(e, f"CXPREDICT_API_KEYS entry {i + 1}") for i, e in enumerate(settings.api_keys or ())]
    path = keys_file(settings)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = None
    except OSError as exc:
        raise StartupError(f"API keys file {path} cannot be read: {exc}") from exc
    for number, line in enumerate(lines or (), start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            keys.append(parse_entry(text, f"{path} line {number}"))
    if not keys and settings.api_keys is None and lines is None:
        try:
            stored = settings.demo_key_file.read_text().strip()
        except FileNotFoundError:
            stored = ""
        if stored:
            keys.append(ApiKey("demo", digest(stored), SCOPES))
    if not keys:
        raise StartupError(
            f"no API key configured: set CXPREDICT_API_KEYS (comma-separated), list keys in {path}, or run "
            f"`cxpredict demo`, which stores one in {settings.demo_key_file}"
        )
    return _unique(keys)


def _file_state(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class KeyRing:
    """The accepted keys of one worker, re-read when the keys file changes.

    Args:
        settings: Where the keys come from.

    Raises:
        StartupError: the keys do not load (see :func:`load_keys`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._path = keys_file(settings)
        self._state = _file_state(self._path)
        self.keys = load_keys(settings)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.reload_errors = 0

    def authenticate(self, header: str | None) -> ApiKey | None:
        """The key an ``Authorization: Bearer <key>`` header carries, or None (every digest compared in full)."""
        if not header:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        candidate = digest(token.strip())
        found = None
        for key in self.keys:  # no early exit: the time taken does not say which key matched
            if hmac.compare_digest(candidate, key.digest):
                found = key
        return found

    def maybe_reload(self, force: bool = False) -> bool:
        """Re-read the keys when the keys file changed; a file that does not load keeps the current keys.

        Returns:
            Whether new keys are in use.
        """
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_SECONDS:
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._checked = now
            state = _file_state(self._path)
            if state == self._state:
                return False
            self._state = state
            try:
                keys = load_keys(self.settings)
            except StartupError as exc:
                self.reload_errors += 1
                log.error("keeping the current API keys: %s", exc)
                return False
            self.keys = keys  # one reference swap
            log.info("API keys reloaded: %s", ", ".join(k.name for k in keys))
            return True
        finally:
            self._lock.release()


class RateLimiter:
    """A token bucket per key name: ``rate`` requests per second on average, bursts of up to ``burst``.

    Args:
        rate: Tokens added per second; 0 turns the limit off.
        burst: Bucket size (at least 1).
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, name: str, now: float | None = None) -> float:
        """Take a token for ``name``: 0 when admitted, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """A ``Retry-After`` value (whole seconds, at least 1) for a wait."""
        return str(max(1, math.ceil(wait)))
