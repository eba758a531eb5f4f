"""One worker's start-up, run by ``cxpredict serve`` in a child process before the server starts.

``python -m serving.preflight`` loads the runtime exactly as a worker would (models, online store, API keys,
decision log) and exits 0, or prints why it cannot and exits :data:`serving.startup.CANNOT_START` (a backend that
cannot be reached is named by its URL without a password, not shown as a driver traceback).
"""

from __future__ import annotations

import logging
import sys

from features.settings import load_settings
from features.stores import OnlineStoreUnavailable
from serving.keys import KeyRing
from serving.runtime import Runtime
from serving.startup import CANNOT_START, StartupError


def main() -> int:
    """Check that a worker can start; the exit code says whether."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        KeyRing(settings)
        probe = Runtime(settings)
    except (StartupError, OnlineStoreUnavailable) as exc:
        print(exc, flush=True)
        return CANNOT_START
    close = getattr(probe.decisions, "close", None)
    if close is not None:
        close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
