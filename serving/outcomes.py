"""``cxpredict outcomes sync``: what the data shows happened after each logged decision, stored as feedback.

For every served decision the horizon window ``[A, A + H)`` starts at the decision's anchor ``A``: the cut-off of
the features it was decided on (``as_of`` in its outputs: the data's "now" when it was made), or its own time
when it has none (a cold start). Once the data reaches the end of the window (its last transaction is at or after
``A + H``), three outcomes are recorded against the decision:

* ``purchased``: 1 if the customer bought anything (an amount above 0) in the window, else 0;
* ``spend``: their net spend in the window (returns subtract);
* ``retained``: 1 if they did not churn in the window (CONTRACT §2: a purchase in it; where the data records
  cancellations, no ``churn_ts`` before the window's end), else 0.

Feedback is stored once per (decision, outcome), so running the sync again (daily) records only new decisions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from features.data import load_data_dir
from features.pipeline import data_end, is_contract
from features.settings import Settings
from serving.decision_log import DecisionLog, FeedbackRow
from serving.decision_log_factory import open_decision_log

log = logging.getLogger(__name__)

OUTCOMES = ("purchased", "spend", "retained")
DEFAULT_HORIZON_DAYS = 90


@dataclass(frozen=True)
class SyncResult:
    """What one sync did.

    Attributes:
        decisions: Served decisions in the log.
        complete: Decisions whose window the data covers.
        inserted: Outcome rows newly stored.
        duplicates: Outcome rows that were already stored (from an earlier sync).
        pending: Decisions whose window is not over yet in the data.
        data_end: The last transaction time in the data.
    """

    decisions: int
    complete: int
    inserted: int
    duplicates: int
    pending: int
    data_end: datetime


def _anchor(decision: dict) -> datetime:
    as_of = decision["outputs"].get("as_of")
    if as_of:
        ts = pd.Timestamp(as_of)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts.to_pydatetime()
    return pd.Timestamp(decision["ts"], unit="s").to_pydatetime()


def outcome_rows(con: object, decisions: list[dict], horizon_days: int) -> tuple[pd.DataFrame, int, datetime]:
    """Outcomes of the decisions whose window the data covers.

    Returns:
        A frame ``decision_id, purchased, spend, retained``, the number still pending and the data's end.
    """
    end = data_end(con)  # type: ignore[arg-type]
    h = timedelta(days=horizon_days)
    frame = pd.DataFrame(
        {
            "decision_id": [d["decision_id"] for d in decisions],
            "customer_id": [str(d["customer_id"]) for d in decisions],
            "start": [_anchor(d) for d in decisions],
        }
    )
    if frame.empty:
        return pd.DataFrame(columns=["decision_id", *OUTCOMES]), 0, end
    frame["stop"] = frame["start"] + h
    ready = frame[frame["stop"] <= end]
    pending = len(frame) - len(ready)
    if ready.empty:
        return pd.DataFrame(columns=["decision_id", *OUTCOMES]), pending, end
    contract = is_contract(con)  # type: ignore[arg-type]
    con.register("sync_decisions", ready)  # type: ignore[attr-defined]
    try:
        out = con.execute(  # type: ignore[attr-defined]
            """
            WITH tx AS (
                SELECT d.decision_id,
                       CAST(coalesce(bool_or(t.amount > 0), FALSE) AS DOUBLE) AS purchased,
                       CAST(coalesce(sum(t.amount), 0) AS DOUBLE) AS spend
                FROM sync_decisions d
                LEFT JOIN transactions t ON t.customer_id = d.customer_id AND t.ts >= d.start AND t.ts < d.stop
                GROUP BY d.decision_id
            ), cx AS (
                SELECT d.decision_id, coalesce(bool_or(c.churn_ts < d.stop), FALSE) AS cancelled
                FROM sync_decisions d LEFT JOIN customers c ON c.customer_id = d.customer_id
                GROUP BY d.decision_id
            )
            SELECT tx.decision_id, tx.purchased, tx.spend, cx.cancelled FROM tx JOIN cx USING (decision_id)
            """
        ).df()
    finally:
        con.unregister("sync_decisions")  # type: ignore[attr-defined]
    # Contract data: churn is a cancellation; otherwise it is a window without a purchase (CONTRACT §2).
    out["retained"] = (~out.pop("cancelled").astype(bool)).astype(float) if contract else out["purchased"]
    return out, pending, end


def sync(data_dir: Path, settings: Settings, horizon_days: int = DEFAULT_HORIZON_DAYS) -> SyncResult:
    """Record the outcomes of every logged decision whose horizon the data covers (idempotent).

    Raises:
        ValueError: ``horizon_days`` is not positive.
        features.data.DataValidationError: the data breaks the contract.
    """
    if horizon_days <= 0:
        raise ValueError(f"--horizon-days {horizon_days}: must be a positive number of days")
    con, _ = load_data_dir(Path(data_dir), tables=("transactions", "customers"))
    dlog: DecisionLog = open_decision_log(settings)
    try:
        decisions = dlog.decisions_since()
        frame, pending, end = outcome_rows(con, decisions, horizon_days)
        rows = [
            FeedbackRow(r.decision_id, outcome, float(getattr(r, outcome)))
            for r in frame.itertuples()
            for outcome in OUTCOMES
        ]
        result = dlog.ingest_feedback(rows) if rows else None
    finally:
        dlog.close()
    return SyncResult(
        decisions=len(decisions),
        complete=len(frame),
        inserted=result.inserted if result else 0,
        duplicates=result.duplicates if result else 0,
        pending=pending,
        data_end=end,
    )
