"""What the ``cxpredict serve`` parent and its worker processes agree on, so that the parent never imports the worker.

The parent (:mod:`serving.cli_serve`, :mod:`serving.manifest`) writes the manifest under ``$CXPREDICT_HOME``; the
workers (:mod:`serving.runtime`) read it and watch it change; ``cxpredict ab`` reads both files.
"""

from __future__ import annotations

from pathlib import Path

from features.kinds import KIND_NAMES

#: The models the service answers with, in answer order (one per model kind).
MODELS: tuple[str, ...] = KIND_NAMES
#: The endpoint (and experiment target) that answers with every model at once.
EVERY_MODEL = "personalize"
#: The single-customer endpoints and the models each one answers with: every model, then each kind alone.
ENDPOINTS: dict[str, tuple[str, ...]] = {EVERY_MODEL: MODELS, **{name: (name,) for name in MODELS}}
#: The serving manifest under ``$CXPREDICT_HOME``: written by the parent, read by the workers and ``ab list``.
MANIFEST_FILE = "serving.json"
#: Manifest key holding why ``experiments.yaml`` did not load (absent while it loads).
EXPERIMENTS_ERROR = "experiments_error"
#: The declared experiments under ``$CXPREDICT_HOME``, written by ``cxpredict ab start/stop`` or by hand.
EXPERIMENTS_FILE = "experiments.yaml"


def file_key(path: Path) -> tuple[int, int, int] | None:
    """Identity of a file version (inode, mtime, size), or None when it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
