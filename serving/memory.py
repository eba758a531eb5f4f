"""Giving a replaced model generation's memory back to the operating system once no request uses it.

A reload loads the new models before the old ones are released, and the C allocator keeps what is freed for later
use: without a trim, each worker would go on holding both generations' worth of memory (benchmarks/soak.py).
"""

from __future__ import annotations

import ctypes
import functools
import threading
import weakref
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)  # the running process's own symbols: the C library it uses
    except (OSError, TypeError):  # no such handle on this platform
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc's public API; musl and macOS have none
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the memory the C allocator holds free to the operating system; False where it cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class Retired:
    """Model generations taken out of service, watched until the last request that started on them has finished.

    Args:
        release: Called once retired generations are gone (default: :func:`release_freed_memory`).
    """

    def __init__(self, release: Callable[[], object] | None = None) -> None:
        self._release = release
        self._lock = threading.Lock()
        self._watched: list[weakref.ref[object]] = []

    def retire(self, generation: object) -> None:
        """Watch a generation that was just swapped out (requests in flight may still hold it)."""
        with self._lock:
            self._watched.append(weakref.ref(generation))

    def pending(self) -> int:
        """Retired generations some request still holds."""
        with self._lock:
            return sum(ref() is not None for ref in self._watched)

    def release(self) -> bool:
        """Give memory back if a retired generation is gone since the last call (cheap otherwise); True if so."""
        with self._lock:
            alive = [ref for ref in self._watched if ref() is not None]
            gone = len(alive) < len(self._watched)
            self._watched = alive
        if gone:
            (self._release or release_freed_memory)()
        return gone
