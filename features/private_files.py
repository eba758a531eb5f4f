"""Files and directories under ``$CXPREDICT_HOME`` are the owner's only: 0600 files, 0700 directories.

They are created with that mode (``os.open``/``mkdir`` with a mode), never widened and narrowed afterwards, so no
other local user can read a key, a feature row or a decision even for a moment. SQLite keeps the mode of a file
that already exists (its ``-wal``/``-shm``/journal files copy it), so a database is created here first.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents owner-only (existing directories are left as they are)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another process
            directory.mkdir(mode=DIR_MODE)
    return path


def create_private_file(path: Path) -> Path:
    """Create ``path`` empty and owner-only if it does not exist (its directory is created owner-only too)."""
    path = Path(path)
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    return path


def write_private_text(path: Path, text: str) -> Path:
    """Write a new owner-only file atomically (a temporary file in the same directory, then ``os.replace``)."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path
