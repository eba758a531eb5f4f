"""What the ``cxpredict ab`` commands do: declare experiments, load feedback in bulk, and build the report.

The commands run beside the service (they share ``$CXPREDICT_HOME``): ``start``/``stop`` rewrite
``experiments.yaml``, which ``cxpredict serve`` picks up within a second; ``ingest`` writes feedback into the
same decision log the service writes to; ``report`` reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.settings import Settings
from serving.decision_log import DECISIONS_FILE, DecisionLog, FeedbackRow, IngestResult, UnknownDecisions
from serving.decision_log_factory import open_decision_log
from serving.experiments import (
    Experiment,
    ExperimentError,
    add_experiment,
    experiments_path,
    load_experiments,
    new_experiment,
    parse_variant,
    stop_experiment,
)
from serving.layout import MANIFEST_FILE
from serving.schemas import MAX_FEEDBACK_VALUE

INGEST_COLUMNS = ("decision_id", "outcome")
INGEST_OPTIONAL = ("value", "ts")


def decision_log(settings: Settings) -> DecisionLog:
    """The configured decision log (embedded: under ``$CXPREDICT_HOME``, created empty when the service never ran)."""
    return open_decision_log(settings)


def _log_exists(settings: Settings) -> bool:
    """Whether there may be logged decisions to read (a server-side log always may)."""
    return bool(settings.decision_log_url) or (Path(settings.home) / DECISIONS_FILE).exists()


def check_variants_exist(
    settings: Settings, models: Sequence[str], refs: Sequence[str], shadow: str | None = None
) -> dict[str, dict[str, int]]:
    """Resolve every variant (and the shadow, if given) in the registry for every model it swaps.

    Returns:
        ``{ref: {model: version}}``.

    Raises:
        ExperimentError: a ref does not resolve for one of the models.
    """
    # Here rather than at the top: MLflow takes seconds to import, and only `ab start` needs the registry.
    from features import registry

    client = registry.configure(settings)
    resolved: dict[str, dict[str, int]] = {}
    labelled = [("variant", ref) for ref in refs] + ([("shadow", shadow)] if shadow else [])
    for label, ref in labelled:
        resolved[ref] = {}
        for model in models:
            try:
                version = registry.resolve(client, model, ref)
                client.get_model_version(model, str(version))
            except Exception as exc:
                raise ExperimentError(
                    f"{label} {ref!r}: model '{model}' has no alias or version {ref!r} in the registry "
                    f"({settings.tracking_uri})"
                ) from exc
            resolved[ref][model] = version
    return resolved


def start(
    settings: Settings,
    name: str,
    model: str,
    variant_specs: Sequence[str],
    shadow: str | None = None,
    holdout: float = 0.0,
    outcome: str = "converted",
) -> tuple[Experiment, dict[str, dict[str, int]]]:
    """Validate, check against the registry, and write a running experiment.

    Returns:
        The experiment and the versions its variants resolve to now.

    Raises:
        ExperimentError: a malformed spec, shares that do not sum to one, a variant missing from the registry, or
            a clash with another running experiment.
    """
    if not variant_specs:
        raise ExperimentError("give at least one --variant ALIAS=SHARE (the first is the report's control)")
    variants = [parse_variant(spec) for spec in variant_specs]
    path = experiments_path(settings)
    # Validate the declaration before touching the registry, so a typo in the shares is reported first.
    declared = new_experiment(name, model, variants, shadow=shadow, holdout=holdout, outcome=outcome)
    resolved = check_variants_exist(settings, declared.models, [v.ref for v in variants], shadow=declared.shadow)
    return add_experiment(path, declared), resolved


def stop(settings: Settings, name: str) -> Experiment:
    """Stop a running experiment."""
    return stop_experiment(experiments_path(settings), name)


def list_experiments(settings: Settings) -> list[dict[str, Any]]:
    """Every declared experiment with its state and the decisions logged for it so far.

    A running experiment the service's manifest lists with an ``error`` (a variant naming an alias the registry
    lacks, say) gets ``routed`` false, the ``error``, and status ``unrouted``: the service answers everyone with
    the champions.
    """
    declared = load_experiments(experiments_path(settings))
    counts: dict[str, tuple[int, int]] = {}
    if _log_exists(settings) and declared.experiments:
        log = decision_log(settings)
        try:
            for experiment in declared.experiments:
                rows = log.experiment_rows(experiment.name)
                served = [r for r in rows if not r["shadow"]]
                counts[experiment.name] = (len(served), len({r["customer_id"] for r in served}))
        finally:
            log.close()
    unrouted = _unrouted(settings)
    out = []
    for e in declared.experiments:
        decisions, customers = counts.get(e.name, (0, 0))
        error = unrouted.get(e.name) if e.status == "running" else None
        out.append(
            {
                "name": e.name,
                "model": e.model,
                "status": e.status,
                "variants": ", ".join(f"{v.ref}={v.share:g}" for v in e.variants),
                "holdout": e.holdout,
                "shadow": e.shadow,
                "started_at": e.started_at.isoformat() if e.started_at else None,
                "stopped_at": e.stopped_at.isoformat() if e.stopped_at else None,
                "decisions": decisions,
                "customers": customers,
                "routed": e.status == "running" and error is None,
                "error": error,
            }
        )
        if error:
            # `ab list` prints status and variants: both say it, so the table cannot read as a running test.
            out[-1]["status"] = "unrouted"
            out[-1]["variants"] += f" — NOT ROUTED (everyone gets the champions): {error}"
    return out


def _unrouted(settings: Settings) -> dict[str, str]:
    """Experiment name -> why the service's current manifest does not route it (empty when no manifest)."""
    try:
        manifest = json.loads((Path(settings.home) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict):
        return {}
    return {
        str(e.get("name")): str(e["error"])
        for e in manifest.get("experiments") or []
        if isinstance(e, dict) and e.get("error")
    }


# --- bulk feedback ---------------------------------------------------------------------------------------
def read_feedback_file(path: Path) -> list[FeedbackRow]:
    """Read and validate a feedback file (CSV or Parquet): ``decision_id, outcome[, value][, ts]``.

    ``ts`` may be epoch seconds or an ISO timestamp (UTC when no zone is given).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unreadable file, a missing column or bad values (the message names the file, column and rows).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feedback file {path} not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".txt"):
            frame = pd.read_csv(path, dtype={"decision_id": str, "outcome": str}, keep_default_na=False, na_values=[""])
        else:
            raise ValueError(f"{path}: unsupported format {suffix!r}; use .csv or .parquet")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise ValueError(f"{path}: cannot read it as {suffix.lstrip('.')}: {exc}") from exc
    missing = [c for c in INGEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected decision_id, outcome[, value][, ts]")
    extra = [c for c in frame.columns if c not in (*INGEST_COLUMNS, *INGEST_OPTIONAL)]
    if extra:
        raise ValueError(f"{path}: unexpected column(s) {extra}; expected decision_id, outcome[, value][, ts]")
    if frame.empty:
        raise ValueError(f"{path}: no rows")

    def rows_where(mask: pd.Series) -> str:
        bad = [int(i) + 1 for i in frame.index[mask.to_numpy()][:5]]
        more = f" and {int(mask.sum()) - 5} more" if int(mask.sum()) > 5 else ""
        return f"row(s) {bad}{more}"

    for column in INGEST_COLUMNS:
        text = frame[column].astype("string").str.strip()
        empty = text.isna() | (text == "")
        if empty.any():
            raise ValueError(f"{path}: column {column!r} is empty in {rows_where(empty)} (rows counted from 1)")
        frame[column] = text
    too_long = (frame["decision_id"].str.len() > 64) | (frame["outcome"].str.len() > 64)
    if too_long.any():
        raise ValueError(f"{path}: decision_id or outcome over 64 characters in {rows_where(too_long)}")
    values: list[float | None] = [None] * len(frame)
    if "value" in frame.columns:
        numeric = pd.to_numeric(frame["value"], errors="coerce")
        bad = numeric.isna() & frame["value"].notna() | ~numeric.abs().le(MAX_FEEDBACK_VALUE) & numeric.notna()
        if bad.any():
            raise ValueError(
                f"{path}: column 'value' is not a finite number between -{MAX_FEEDBACK_VALUE:.0e} and "
                f"{MAX_FEEDBACK_VALUE:.0e} in {rows_where(bad)}"
            )
        values = [None if pd.isna(v) else float(v) for v in numeric]
    stamps: list[float | None] = [None] * len(frame)
    if "ts" in frame.columns:
        stamps = _parse_ts(frame["ts"], path, rows_where)
    # Within one file the first record of a (decision, outcome) wins, as for repeated POSTs.
    first = ~frame.duplicated(["decision_id", "outcome"], keep="first").to_numpy()
    return [
        FeedbackRow(decision_id=d, outcome=o, value=v, ts=t)
        for d, o, v, t, keep in zip(frame["decision_id"], frame["outcome"], values, stamps, first, strict=True)
        if keep
    ]


def _parse_ts(column: pd.Series, path: Path, rows_where: Any) -> list[float | None]:
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return [float(v) for v in numeric]
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna() & column.notna()
    if bad.any():
        raise ValueError(f"{path}: column 'ts' is not a timestamp in {rows_where(bad)}")
    return [None if pd.isna(t) else t.timestamp() for t in parsed]


#: Feedback rows per transaction of ``ab ingest``: the service's own writes get the log's lock in between.
INGEST_CHUNK = 2_000


def ingest(settings: Settings, path: Path) -> IngestResult:
    """Load a feedback file into the decision log: nothing when a row names an unknown decision, else every row.

    Every decision id is checked first (a read); the rows are then written :data:`INGEST_CHUNK` at a time, one
    transaction each, so a large file never holds the log's write lock long enough to stall the service. A run
    cut short (killed) leaves some chunks stored: running it again stores the rest (stored rows are duplicates).

    Raises:
        ValueError: the file is invalid, or names decision ids the log does not hold (nothing is stored).
    """
    rows = read_feedback_file(path)
    log = decision_log(settings)
    try:
        missing = log.missing_decisions([r.decision_id for r in rows])
        if missing:
            raise UnknownDecisions([rows[i].decision_id for i in missing], missing)
        inserted = duplicates = 0
        for start in range(0, len(rows), INGEST_CHUNK):
            done = log.ingest_feedback(rows[start : start + INGEST_CHUNK])
            inserted, duplicates = inserted + done.inserted, duplicates + done.duplicates
        return IngestResult(inserted=inserted, duplicates=duplicates)
    except UnknownDecisions as exc:
        shown = ", ".join(repr(i) for i in exc.ids[:5]) + (f" and {len(exc.ids) - 5} more" if len(exc.ids) > 5 else "")
        raise ValueError(
            f"{path}: {len(exc.ids)} row(s) name decision ids this service never issued ({shown}); nothing was stored"
        ) from None
    finally:
        log.close()


# --- the report ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportData:
    """What the report is computed from.

    Attributes:
        experiment: The declaration.
        units: One row per customer (see :func:`units_frame`).
        shadow_decisions: Decisions the shadow variant logged.
        switched: Customers logged under more than one arm (should be 0; assignment is deterministic).
    """

    experiment: Experiment
    units: pd.DataFrame
    shadow_decisions: int
    switched: int


def units_frame(rows: Sequence[dict[str, Any]], outcome: str) -> tuple[pd.DataFrame, int]:
    """One row per customer from served decisions and their feedback.

    Columns: ``customer_id, variant, first_ts, decisions, converted, value, pre_value``. A customer's arm is the
    one of their first decision; ``converted`` is whether any of their decisions got ``outcome`` feedback, and
    ``value`` the sum of its values.

    Returns:
        The frame and the number of customers seen under more than one arm.
    """
    units: dict[str, dict[str, Any]] = {}
    arms: dict[str, set[str]] = {}
    for row in rows:
        if row["shadow"]:
            continue
        cid = row["customer_id"]
        unit = units.get(cid)
        if unit is None:
            unit = units[cid] = {
                "customer_id": cid,
                "variant": row["variant"],
                "first_ts": float(row["ts"]),
                "decisions": 0,
                "converted": 0,
                "value": 0.0,
                "pre_value": math.nan if row["pre_value"] is None else float(row["pre_value"]),
            }
        arms.setdefault(cid, set()).add(row["variant"])
        unit["decisions"] += 1
        for fb in row["feedback"]:
            if fb["outcome"] == outcome:
                unit["converted"] = 1
                unit["value"] += float(fb["value"] or 0.0)
    columns = ["customer_id", "variant", "first_ts", "decisions", "converted", "value", "pre_value"]
    frame = pd.DataFrame(list(units.values()), columns=columns)
    frame = frame.astype(
        {"customer_id": str, "variant": str, "first_ts": float, "decisions": int, "converted": int, "value": float}
    )
    frame["pre_value"] = frame["pre_value"].astype(float)
    return frame, sum(1 for s in arms.values() if len(s) > 1)


def report_data(settings: Settings, name: str) -> ReportData:
    """Gather an experiment's decisions and feedback.

    Raises:
        ExperimentError: no such experiment.
    """
    experiment = load_experiments(experiments_path(settings)).get(name)
    rows: list[dict[str, Any]] = []
    if _log_exists(settings):
        log = decision_log(settings)
        try:
            rows = log.experiment_rows(name)
        finally:
            log.close()
    units, switched = units_frame(rows, experiment.outcome)
    return ReportData(experiment, units, sum(1 for r in rows if r["shadow"]), switched)


def report(settings: Settings, name: str, html: Path | None = None) -> tuple[str, Path]:
    """The experiment's result as terminal text, and the HTML report written to ``html``.

    ``html`` defaults to ``$CXPREDICT_HOME/reports/<name>.html``.

    Raises:
        ExperimentError: no such experiment.
        ValueError: nothing logged yet.
    """
    from serving.ab_report import format_text, write_html
    from serving.ab_stats import analyze

    data = report_data(settings, name)
    experiment = data.experiment
    if data.units.empty:
        raise ValueError(f"experiment {name!r} has no logged decisions yet: send traffic through `cxpredict serve`")
    units = data.units
    overflowed = ~np.isfinite(units["value"].to_numpy(dtype=float))
    if overflowed.any():
        # Feedback stored before values were bounded can add up past a float's range. Clipped to the largest
        # float, they make analyze() skip the value comparison and say so, instead of printing inf and nan.
        units = units.assign(
            value=units["value"].fillna(np.finfo(float).max).clip(-np.finfo(float).max, np.finfo(float).max)
        )
    result = analyze(units, dict(experiment.arms()), control=experiment.variants[0].ref)
    text = format_text(result, name)
    notes = [f"outcome analysed: {experiment.outcome!r}; control: {experiment.variants[0].ref!r}"]
    if overflowed.any():
        notes.append(
            f"WARNING: the feedback values of {int(overflowed.sum())} customer(s) are not finite (they add up beyond a "
            "float's range): value per customer is not compared"
        )
    if experiment.shadow:
        notes.append(f"shadow variant {experiment.shadow!r}: {data.shadow_decisions} decisions scored and logged")
    if data.switched:
        notes.append(f"WARNING: {data.switched} customers were logged under more than one arm")
    text = text.rstrip("\n") + "\n" + "\n".join(notes) + "\n"
    target = Path(html) if html else Path(settings.home) / "reports" / f"{name}.html"
    inside_home = target.resolve().is_relative_to(Path(settings.home).resolve())
    write_html(result, units, target, name, mode=0o600 if inside_home else 0o644)
    return text, target
