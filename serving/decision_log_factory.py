"""Choosing the decision log from the settings: embedded SQLite by default, PostgreSQL for a ``postgresql://`` URL."""

from __future__ import annotations

from pathlib import Path

from features.settings import Settings
from serving.decision_log import DECISIONS_FILE, DecisionLog, SQLiteDecisionLog


def open_decision_log(settings: Settings) -> DecisionLog:
    """The decision log the settings name (``CXPREDICT_DECISION_LOG``).

    Raises:
        serving.decision_log.DecisionLogError: the log cannot be opened.
        ValueError: the URL's scheme is not one cxpredict knows.
    """
    url = settings.decision_log_url
    if not url:
        return SQLiteDecisionLog(Path(settings.home) / DECISIONS_FILE)
    if url.startswith(("postgresql://", "postgres://")):
        from serving.decision_log_pg import PostgresDecisionLog

        return PostgresDecisionLog(url)
    raise ValueError(f"CXPREDICT_DECISION_LOG={url!r}: expected postgresql://... (or unset for the embedded log)")
