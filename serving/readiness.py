"""Readiness changes, logged once each: a probe every second per replica must not write a line every second."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence


class ReadinessLog:
    """Logs when the service stops being ready (and why), when another backend joins the trouble, and recovery.

    A problem is a ``"backend: why"`` string (:meth:`serving.runtime.Runtime.problems`); only the set of backends
    in trouble counts as a change, so an error text that varies from probe to probe does not log again.

    Args:
        logger: Where the changes go, as warnings both ways (a worker shows warnings, and a recovery belongs
            beside the outage it ends).
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._down: tuple[str, ...] = ()

    def report(self, problems: Sequence[str]) -> None:
        """Record the outcome of one readiness check; logs only if the set of backends in trouble changed."""
        down = tuple(sorted({p.split(":", 1)[0] for p in problems}))
        with self._lock:
            before, self._down = self._down, down
        if down == before:
            return
        if down:
            self._logger.warning("not ready: %s", "; ".join(problems))
        else:
            self._logger.warning("ready again (%s recovered)", ", ".join(before))
