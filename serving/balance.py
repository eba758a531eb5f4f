"""How many client connections each worker process of one server holds, shared through a small memory-mapped file.

The workers of a server share one listening socket, and a keep-alive connection stays with the worker that accepted
it; which one accepts is a race. :class:`serving.http.ConnectionRecycler` asks a client to reconnect when its worker
holds more than its share, and this is where the workers tell each other their counts. Each worker writes only its
own slot (its count and when it wrote it); a reader counts the workers whose slot is fresh. A worker's count is the
number of client addresses it answered within :data:`WINDOW_SECONDS` (ASGI tells a request's peer, not when a
connection opens or closes).
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import tempfile
import time
from pathlib import Path

#: Seconds a peer counts as connected after its last request.
WINDOW_SECONDS = 1.0
#: Seconds after which a worker's slot no longer counts (a stopped or restarted worker).
STALE_SECONDS = 2.0
#: Slots in the file: worker indices 1..SLOTS.
SLOTS = 64
_SLOT = struct.Struct("<dq")  # written at: time.monotonic() (one clock for every process), connections


class WorkerShares:
    """This worker's slot in its server's shared file, and the fair share of connections the slots imply.

    Args:
        index: This worker's index among the server's workers (BentoML's ``server_context.worker_index``, from 1).
        path: The shared file; by default one per server (keyed by the parent process) in the temporary directory.
    """

    def __init__(self, index: int, path: Path | None = None) -> None:
        if not 1 <= index <= SLOTS:
            raise ValueError(f"worker index {index} is outside 1..{SLOTS}")
        self.index = index
        self.path = path or Path(tempfile.gettempdir()) / f"cxpredict-connections-{os.getppid()}.bin"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SLOTS * _SLOT.size:
                os.ftruncate(fd, SLOTS * _SLOT.size)
            self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
        finally:
            os.close(fd)

    def publish(self, connections: int, now: float | None = None) -> None:
        """Say how many connections this worker holds now."""
        _SLOT.pack_into(self._map, (self.index - 1) * _SLOT.size, time.monotonic() if now is None else now, connections)

    def fair_share(self, now: float | None = None) -> int | None:
        """The most connections a worker should hold (the total over the live workers, rounded up), or None alone."""
        now = time.monotonic() if now is None else now
        counts = [
            count
            for written, count in (_SLOT.unpack_from(self._map, i * _SLOT.size) for i in range(SLOTS))
            if written > 0 and now - written < STALE_SECONDS
        ]
        if len(counts) < 2:
            return None
        return math.ceil(sum(counts) / len(counts))

    def close(self) -> None:
        """Release the mapping."""
        self._map.close()
