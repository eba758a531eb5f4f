"""``cxpredict roi``: what the decisions earned, treated customers against the global holdout of the contact policy.

Units are customers. A customer is *treated* when a decision in the period showed them an offer, and in the
*holdout* when a decision withheld an offer because of the global holdout although one would have paid (the same
selection as the treated: the holdout's would-be offer is its top-ranked offer with positive value). Each
customer's outcomes are those ``cxpredict outcomes sync`` (or a client's feedback) recorded against their first
such decision: ``spend``, ``retained``. Per treated customer::

    incremental revenue = mean spend (treated) - mean spend (holdout)     (CUPED with pre-period spend when it
    incremental retention = retained rate (treated) - retained rate (holdout)   narrows the interval)

scaled to the number treated, with 95% Welch intervals; the offer cost is the catalog cost of the offers shown;
ROI = (incremental revenue - cost) / cost. Overall, per offer (treated with an offer against the holdout whose
would-be offer it was) and per churn-risk band.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from features.kinds import CHURN, NEXT_BEST_OFFER
from features.policy_value import Estimate
from features.schema import CONTROL_OFFER
from features.settings import Settings
from serving.decision_log_factory import open_decision_log
from serving.layout import MANIFEST_FILE

MLFLOW_EXPERIMENT = "cxpredict-roi"
Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True)
class Segment:
    """Treated against holdout within one segment (overall, an offer or a risk band).

    Attributes:
        name: The segment.
        treated: Treated customers with outcomes.
        holdout: Holdout customers with outcomes.
        revenue_per_customer: Incremental revenue per treated customer.
        incremental_revenue: Total over the treated customers.
        retained: Incremental customers retained (total).
        cost: Offer cost of the treated customers.
        roi: (incremental revenue - cost) / cost.
        cuped: Whether the revenue figures are CUPED-adjusted.
    """

    name: str
    treated: int
    holdout: int
    revenue_per_customer: Estimate
    incremental_revenue: Estimate
    retained: Estimate
    cost: Estimate
    roi: Estimate
    cuped: bool


@dataclass
class RoiResult:
    """The whole report: overall, per offer, per risk band, and the cumulative series for the chart."""

    overall: Segment | None
    offers: list[Segment] = field(default_factory=list)
    bands: list[Segment] = field(default_factory=list)
    cumulative: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    since: datetime | None = None


def _nan() -> Estimate:
    return Estimate(math.nan, math.nan, math.nan)


def diff_means(y_t: np.ndarray, y_h: np.ndarray) -> Estimate:
    """Mean of treated minus mean of holdout with a 95% Welch interval."""
    if len(y_t) < 2 or len(y_h) < 2:
        return _nan()
    d = float(y_t.mean() - y_h.mean())
    se = math.sqrt(y_t.var(ddof=1) / len(y_t) + y_h.var(ddof=1) / len(y_h))
    return Estimate(d, d - Z95 * se, d + Z95 * se)


def cuped_diff(y_t: np.ndarray, y_h: np.ndarray, x_t: np.ndarray, x_h: np.ndarray) -> Estimate:
    """:func:`diff_means` of ``y - theta * (x - mean x)``, theta pooled over both groups (Deng et al., 2013)."""
    x = np.concatenate([x_t, x_h])
    y = np.concatenate([y_t, y_h])
    var = float(x.var(ddof=1)) if len(x) > 1 else 0.0
    if var <= 0:
        return diff_means(y_t, y_h)
    theta = float(np.cov(x, y, ddof=1)[0, 1]) / var
    mean = float(x.mean())
    return diff_means(y_t - theta * (x_t - mean), y_h - theta * (x_h - mean))


def _segment(name: str, treated: pd.DataFrame, holdout: pd.DataFrame) -> Segment:
    y_t, y_h = treated["spend"].to_numpy(float), holdout["spend"].to_numpy(float)
    raw = diff_means(y_t, y_h)
    per, cuped = raw, False
    x_t, x_h = treated["pre_value"].to_numpy(float), holdout["pre_value"].to_numpy(float)
    if np.isfinite(x_t).all() and np.isfinite(x_h).all() and len(x_t) > 1 and len(x_h) > 1:
        adjusted = cuped_diff(y_t, y_h, x_t, x_h)
        if adjusted.high - adjusted.low < raw.high - raw.low:
            per, cuped = adjusted, True
    n = len(treated)
    revenue = per.scaled(n)
    retained = diff_means(treated["retained"].to_numpy(float), holdout["retained"].to_numpy(float)).scaled(n)
    cost = float(treated["cost"].sum())
    roi = (
        Estimate((revenue.value - cost) / cost, (revenue.low - cost) / cost, (revenue.high - cost) / cost)
        if cost > 0
        else _nan()
    )
    return Segment(name, n, len(holdout), per, revenue, retained, Estimate(cost, cost, cost), roi, cuped)


def _catalog_costs(settings: Settings) -> dict[str, float]:
    """Offer costs of the served offer model (the manifest's bundle), for decisions that did not log their cost."""
    try:
        manifest = json.loads((Path(settings.home) / MANIFEST_FILE).read_text())
        path = Path((manifest.get(NEXT_BEST_OFFER.name) or {}).get("path") or "")
        meta = json.loads((path / "bundle.json").read_text())
        return {o["offer_id"]: float(o["cost"]) for o in meta["offers"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def units(decisions: list[dict[str, Any]], costs: dict[str, float]) -> tuple[pd.DataFrame, list[str]]:
    """One row per treated or holdout customer: their first qualifying decision and its outcomes."""
    rows = []
    missing_cost: set[str] = set()
    for d in decisions:
        nbo = d["outputs"].get(NEXT_BEST_OFFER.name) or {}
        experiment = d.get("experiment")
        if experiment and nbo.get("holdout"):
            continue  # an A/B experiment's holdout, not the contact policy's
        offer = d.get("offer_id")
        if offer and offer != CONTROL_OFFER:
            group, shown = "treated", offer
        elif nbo.get("reason") == "holdout":
            shown = nbo.get("would_offer")
            ranking = nbo.get("ranking") or []
            if shown is None and ranking and ranking[0].get("expected_value", 0) > 0:
                shown = ranking[0]["offer_id"]
            if shown is None:
                continue  # nothing would have paid: not comparable with the treated
            group = "holdout"
        else:
            continue
        fb = d.get("feedback") or {}
        if "spend" not in fb:
            continue
        cost = nbo.get("cost") if group == "treated" else 0.0
        if cost is None:
            cost = costs.get(shown)
            if cost is None:
                missing_cost.add(shown)
                cost = 0.0
        churn = d["outputs"].get(CHURN.name) or {}
        rows.append(
            {
                "customer_id": d["customer_id"],
                "ts": float(d["ts"]),
                "group": group,
                "offer": shown,
                "band": churn.get("risk_band") or "unknown",
                "spend": float(fb["spend"] or 0.0),
                "retained": float(fb.get("retained") or 0.0),
                "pre_value": float(d["pre_value"]) if d.get("pre_value") is not None else math.nan,
                "cost": float(cost),
            }
        )
    notes = []
    if missing_cost:
        notes.append(f"no cost known for offers {sorted(missing_cost)} (counted as 0): serve or target with them")
    frame = pd.DataFrame(
        rows, columns=["customer_id", "ts", "group", "offer", "band", "spend", "retained", "pre_value", "cost"]
    )
    # A customer counts once, in the group of their first decision (later ones overlap its outcome window).
    frame = frame.sort_values("ts", kind="stable").drop_duplicates("customer_id").reset_index(drop=True)
    return frame, notes


def analyze(frame: pd.DataFrame, notes: list[str] | None = None, since: datetime | None = None) -> RoiResult:
    """Treated against holdout overall, per offer and per risk band, and the cumulative incremental revenue."""
    notes = list(notes or [])
    t, h = frame[frame["group"] == "treated"], frame[frame["group"] == "holdout"]
    if len(t) < 2 or len(h) < 2:
        notes.append(
            f"{len(t)} treated and {len(h)} holdout customers with outcomes: at least 2 of each are needed "
            "(run `cxpredict outcomes sync`, and set holdout_share in policy.yaml)"
        )
        return RoiResult(None, notes=notes, since=since)
    result = RoiResult(_segment("overall", t, h), notes=notes, since=since)
    for offer in sorted(set(t["offer"])):
        result.offers.append(_segment(offer, t[t["offer"] == offer], h[h["offer"] == offer]))
    for band in ("high", "medium", "low", "churned", "unknown"):
        if (t["band"] == band).any():
            result.bands.append(_segment(band, t[t["band"] == band], h[h["band"] == band]))
    ordered = frame.sort_values("ts", kind="stable")
    is_t = (ordered["group"] == "treated").to_numpy()
    spend = ordered["spend"].to_numpy(float)
    n_t, n_h = np.cumsum(is_t), np.cumsum(~is_t)
    s_t, s_h = np.cumsum(spend * is_t), np.cumsum(spend * ~is_t)
    with np.errstate(invalid="ignore", divide="ignore"):
        cum = n_t * (s_t / n_t - s_h / n_h)
    result.cumulative = pd.DataFrame({"ts": ordered["ts"].to_numpy(), "incremental_revenue": cum}).dropna()
    return result


def _fmt(e: Estimate, pct: bool = False) -> str:
    if not math.isfinite(e.value):
        return "n/a"
    if pct:
        return f"{e.value:+.1%} [{e.low:+.1%}, {e.high:+.1%}]"
    return f"{e.value:+,.2f} [{e.low:+,.2f}, {e.high:+,.2f}]"


HEADER = ["segment", "treated", "holdout", "incremental revenue", "customers retained", "offer cost", "ROI"]


def _cells(s: Segment) -> list[str]:
    rev = _fmt(s.incremental_revenue) + (" (CUPED)" if s.cuped else "")
    return [s.name, str(s.treated), str(s.holdout), rev, _fmt(s.retained), f"{s.cost.value:,.2f}", _fmt(s.roi, True)]


def format_text(result: RoiResult) -> str:
    """The terminal report."""
    lines = [
        f"ROI against the global holdout{f' since {result.since:%Y-%m-%d}' if result.since else ''} (95% intervals)"
    ]
    if result.overall is not None:
        lines.append(" | ".join(HEADER))
        for title, segs in (("", [result.overall]), ("per offer", result.offers), ("per risk band", result.bands)):
            if title:
                lines.append(f"-- {title}")
            lines += [" | ".join(_cells(s)) for s in segs]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def _chart(result: RoiResult) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cum = result.cumulative
    if len(cum):
        ax.step(pd.to_datetime(cum["ts"], unit="s"), cum["incremental_revenue"], where="post", color="#2ca02c")
    ax.axhline(0, color="#7f7f7f", linewidth=0.8)
    ax.set_title("Cumulative incremental revenue (treated vs holdout, by decision time)")
    ax.set_xlabel("decision time (UTC)")
    ax.set_ylabel("incremental revenue")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(segs: list[Segment]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(s)) + "</tr>" for s in segs)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html(result: RoiResult, path: Path) -> Path:
    """One self-contained HTML page (tables and the chart), written atomically."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cxpredict ROI</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}</style>"
        "</head><body><h1>What the retention decisions earned</h1>",
        f"<p>Treated customers against the contact policy's global holdout"
        f"{html.escape(f' since {result.since:%Y-%m-%d}') if result.since else ''}; figures are totals over the "
        "treated customers with 95% intervals; incremental revenue is CUPED-adjusted with pre-period spend where "
        "that narrows the interval. ROI = (incremental revenue - offer cost) / offer cost.</p>",
    ]
    if result.overall is not None:
        parts += ["<h2>Overall</h2>", _table([result.overall]), "<h2>Per offer</h2>", _table(result.offers)]
        parts += ["<h2>Per churn-risk band</h2>", _table(result.bands)]
        parts.append(f'<h2>Over time</h2><img src="data:image/png;base64,{_chart(result)}" alt="cumulative chart">')
    parts += [f"<p><em>{html.escape(n)}</em></p>" for n in result.notes]
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write("".join(parts))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _log_mlflow(settings: Settings, result: RoiResult) -> str | None:
    if result.overall is None:
        return None
    import mlflow

    from features import registry

    registry.configure(settings)
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    with mlflow.start_run(run_name="roi") as run:
        if result.since:
            mlflow.log_param("since", result.since.isoformat())
        metrics: dict[str, float] = {}
        for prefix, segs in (("", [result.overall]), ("offer_", result.offers), ("band_", result.bands)):
            for s in segs:
                key = "" if not prefix else f"{prefix}{s.name}_"
                metrics[f"{key}treated"] = s.treated
                metrics[f"{key}holdout"] = s.holdout
                for name, est in (
                    ("incremental_revenue", s.incremental_revenue),
                    ("retained", s.retained),
                    ("roi", s.roi),
                ):
                    metrics.update(
                        {f"{key}{name}": est.value, f"{key}{name}_low": est.low, f"{key}{name}_high": est.high}
                    )
                metrics[f"{key}offer_cost"] = s.cost.value
        # Metric names allow letters, digits and _-./ only: an offer id is data, so anything else becomes _.
        clean = {"".join(ch if ch.isalnum() or ch in "_-./" else "_" for ch in k): float(v) for k, v in metrics.items()}
        mlflow.log_metrics({k: v for k, v in clean.items() if math.isfinite(v)})
        return run.info.run_id


def roi(settings: Settings, since: datetime | None = None, html_path: Path | None = None) -> tuple[RoiResult, str]:
    """Compute the report from the decision log, write the HTML page (if asked) and log the figures to MLflow.

    Returns:
        The result and the terminal text.
    """
    dlog = open_decision_log(settings)
    try:
        decisions = dlog.decisions_since(pd.Timestamp(since).tz_localize("UTC").timestamp() if since else None)
    finally:
        dlog.close()
    frame, notes = units(decisions, _catalog_costs(settings))
    result = analyze(frame, notes, since)
    if html_path is not None:
        write_html(result, html_path)
    _log_mlflow(settings, result)
    return result, format_text(result)
