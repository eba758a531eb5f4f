"""Privacy: forget and export a customer, the retention period, and which request ``context`` is logged.

``forget`` erases customers from everything cxpredict holds under its settings: the online store (SQLite or
Redis), the decision log and its feedback (SQLite or PostgreSQL) — which are also the A/B experiments' records —
and the HTML reports under ``$CXPREDICT_HOME/reports`` that name them (an A/B report whose experiment is still
declared is written again without them; any other is deleted). The running service keeps no per-customer cache:
it reads the store on every request (the SQLite store is swapped for a copy without the rows, which its readers
notice by the file's inode), so the next request for a forgotten id is a 404. The input tables are the user's:
a later ``features materialize`` from data that still holds the customer brings their features back.

``purge_expired`` enforces the retention period (``CXPREDICT_RETENTION_DAYS``, default 400) on the decision log;
``cxpredict retention`` runs it once (daily from cron, say) and ``cxpredict serve`` runs it every
:data:`RETENTION_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.settings import Settings
from serving.context_allowlist import allowed_context
from serving.decision_log import DECISIONS_FILE

__all__ = ["allowed_context", "export", "forget", "purge_expired", "retention_loop"]

log = logging.getLogger(__name__)

#: Seconds between two retention purges in ``cxpredict serve`` (the first runs shortly after start).
RETENTION_INTERVAL_SECONDS = 6 * 3600.0
#: Seconds ``serve`` waits after starting before its first purge (the server comes up first).
RETENTION_FIRST_DELAY_SECONDS = 30.0
REPORTS_DIR = "reports"
_EMBEDDED_IMAGE = re.compile(rb"base64,[A-Za-z0-9+/=\s]+")


class BackendUnavailable(OSError):  # noqa: N818 - reads better at the raise site
    """A store or log named by the settings cannot be reached (nothing was claimed erased from it)."""


@dataclass
class ForgetReport:
    """What ``forget`` erased, per store.

    Attributes:
        online_store: Feature rows erased from the online store.
        decisions: Decisions erased from the decision log.
        feedback: Feedback records erased with them.
        reports_rewritten: HTML reports written again without the customers.
        reports_deleted: HTML reports deleted because they named the customers.
    """

    online_store: int = 0
    decisions: int = 0
    feedback: int = 0
    reports_rewritten: list[Path] = field(default_factory=list)
    reports_deleted: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self, settings: Settings) -> list[str]:
        """One line per store, for the terminal."""
        store = settings.online_store_url or settings.online_store_dir
        log_where = settings.decision_log_url or Path(settings.home) / DECISIONS_FILE
        return [
            f"online store ({_safe(str(store))}): {self.online_store} feature rows erased",
            f"decision log ({_safe(str(log_where))}): {self.decisions} decisions and {self.feedback} feedback "
            "records erased (experiment records included)",
            f"reports: {len(self.reports_rewritten)} rewritten without them, {len(self.reports_deleted)} deleted"
            + "".join(f"\n  rewritten {p}" for p in self.reports_rewritten)
            + "".join(f"\n  deleted {p}" for p in self.reports_deleted),
            *(f"WARNING: {w}" for w in self.warnings),
        ]


def _safe(where: str) -> str:
    from serving.decision_log_pg import _safe as without_password

    return without_password(where)


def _log_exists(settings: Settings) -> bool:
    # The embedded log is not created just to find it empty.
    return bool(settings.decision_log_url) or (Path(settings.home) / DECISIONS_FILE).exists()


def _open_log(settings: Settings) -> Any:
    from serving.decision_log import DecisionLogError
    from serving.decision_log_factory import open_decision_log

    try:
        return open_decision_log(settings)
    except DecisionLogError as exc:
        raise BackendUnavailable(str(exc)) from exc


def _store_call(settings: Settings, action: str, call: Any) -> Any:
    from features.stores.factory import open_online_store

    store = open_online_store(settings)
    try:
        return call(store)
    except FileNotFoundError:  # no store materialized yet (either backend): it holds nobody
        return None
    except Exception as exc:  # Redis down: say so, never report 0 rows erased
        where = _safe(settings.online_store_url or str(settings.online_store_dir))
        raise BackendUnavailable(f"online store {where}: cannot {action}: {exc}") from exc
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _report_files(settings: Settings) -> list[Path]:
    root = Path(settings.home) / REPORTS_DIR
    return sorted(root.glob("*.html")) if root.is_dir() else []


def _names(path: Path, customer_ids: Sequence[str]) -> bool:
    """Whether a report names one of the ids (as a whole token, outside embedded images)."""
    text = _EMBEDDED_IMAGE.sub(b"", path.read_bytes())
    for cid in customer_ids:
        for form in {cid, html.escape(cid)}:
            if re.search(rb"(?<![\w-])" + re.escape(form.encode()) + rb"(?![\w-])", text):
                return True
    return False


def _rewrite_or_delete(settings: Settings, path: Path, report: ForgetReport) -> None:
    from serving import ab
    from serving.experiments import experiments_path, load_experiments

    try:
        if path.stem in {e.name for e in load_experiments(experiments_path(settings)).experiments}:
            ab.report(settings, path.stem, path)
            report.reports_rewritten.append(path)
            return
    except Exception as exc:  # nothing left to report on, or a broken experiments file: the report goes
        log.info("report %s not rewritten (%s): deleted", path, exc)
    path.unlink(missing_ok=True)
    report.reports_deleted.append(path)


def forget(settings: Settings, customer_ids: Iterable[str]) -> ForgetReport:
    """Erase customers from the online store, the decision log (with feedback) and the reports.

    Raises:
        BackendUnavailable: a configured backend cannot be reached (what was erased before stays erased).
    """
    ids = list(dict.fromkeys(str(c) for c in customer_ids))
    report = ForgetReport()
    if not ids:
        return report
    named = [p for p in _report_files(settings) if _names(p, ids)]
    report.online_store = _store_call(settings, "erase", lambda store: store.forget(ids)) or 0
    if _log_exists(settings):
        decisions = _open_log(settings)
        try:
            counts = decisions.forget(ids)
        finally:
            decisions.close()
        report.decisions, report.feedback = counts["decisions"], counts["feedback"]
        if counts.get("wal_not_truncated"):
            report.warnings.append(
                "the decision log's WAL file could not be emptied (readers kept it busy for 5 s) and may still hold "
                "the erased rows: run `cxpredict forget` again with the same ids"
            )
    for path in named:
        _rewrite_or_delete(settings, path, report)
    return report


def export(settings: Settings, customer_id: str) -> dict[str, Any]:
    """Everything cxpredict holds about one customer, as JSON-ready data."""
    row = _store_call(settings, "read", lambda store: store.get(customer_id))
    decisions: list[dict[str, Any]] = []
    if _log_exists(settings):
        log_ = _open_log(settings)
        try:
            decisions = log_.export(customer_id)["decisions"]
        finally:
            log_.close()
    return {
        "customer_id": customer_id,
        "online_store": {"features": row},
        "decision_log": {"decisions": decisions},
        "reports": [str(p) for p in _report_files(settings) if _names(p, [customer_id])],
    }


def retention_cutoff(settings: Settings, now: float | None = None) -> float:
    """Epoch seconds before which decisions and feedback are past the retention period."""
    return (time.time() if now is None else now) - settings.retention_days * 86400.0


def purge_expired(settings: Settings, now: float | None = None) -> dict[str, int]:
    """Erase decisions (with their feedback) and feedback older than the retention period; counts erased."""
    if not _log_exists(settings):
        return {"decisions": 0, "feedback": 0}
    decisions = _open_log(settings)
    try:
        return decisions.purge(retention_cutoff(settings, now))
    finally:
        decisions.close()


def retention_loop(
    settings: Settings,
    stop: threading.Event,
    interval: float = RETENTION_INTERVAL_SECONDS,
    first_delay: float = RETENTION_FIRST_DELAY_SECONDS,
) -> None:
    """Purge expired decisions every ``interval`` seconds until ``stop`` is set (``serve`` runs it in a thread)."""
    delay = first_delay
    while not stop.wait(delay):
        delay = interval
        try:
            counts = purge_expired(settings)
        except Exception:  # a log that is down now is purged next time; serving goes on
            log.exception("retention purge failed")
            continue
        if counts["decisions"] or counts["feedback"]:
            log.info(
                "retention: erased %d decisions and %d feedback records older than %d days",
                counts["decisions"],
                counts["feedback"],
                settings.retention_days,
            )
