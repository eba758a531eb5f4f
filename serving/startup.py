"""Whether ``cxpredict serve`` can start: the error it stops with, and the workers' start-up checked beforehand.

The serve parent never imports the worker's code (:mod:`serving.runtime`). To fail early with a clear message
rather than inside a BentoML worker, it runs one worker's start-up (:mod:`serving.preflight`) in a child process
first and turns what that reports into a :class:`StartupError`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

#: Exit code of :mod:`serving.preflight` when the worker cannot start; its stdout then holds the reason.
CANNOT_START = 3


class StartupError(RuntimeError):
    """The service cannot start: the message says what is missing and how to fix it."""


def preflight(env: Mapping[str, str], cwd: Path) -> None:
    """Start one worker's runtime in a child process (same environment as the server) and stop it again.

    Raises:
        StartupError: models, store, keys or the decision log would not load in a worker (the reason the worker
            gave), or the check itself crashed (its traceback is on stderr).
    """
    command = [sys.executable, "-m", "serving.preflight"]
    done = subprocess.run(command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode == CANNOT_START:
        raise StartupError(done.stdout.strip())
    if done.returncode != 0:
        raise StartupError(
            f"the worker start-up check ({' '.join(command[1:])}) failed with exit code {done.returncode}; "
            "its traceback is above"
        )
