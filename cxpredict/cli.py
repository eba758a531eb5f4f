"""The ``cxpredict`` command line (CONTRACT §3): a thin typer layer over the features/training/serving packages.

Each command parses its flags, calls one function of the packages, and turns a client mistake (bad data, bad
flag) into a one-paragraph message on stderr and exit code 2. Heavy imports happen inside the commands so that
``cxpredict --help`` is instant.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, ParamSpec

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Churn, CLTV and next-best-offer predictions.")
features_app = typer.Typer(no_args_is_help=True, help="Build feature tables and the online store.")
app.add_typer(features_app, name="features")
ab_app = typer.Typer(no_args_is_help=True, help="A/B tests between model versions.")
app.add_typer(ab_app, name="ab")

P = ParamSpec("P")
DataOpt = Annotated[Path, typer.Option("--data", help="data directory with the canonical tables")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="cut-off time T (ISO date or timestamp)")]


class UsageError(Exception):
    """A mistake in the command's input: reported without a traceback."""


@contextmanager
def _client_errors() -> Iterator[None]:
    from features.data import DataValidationError
    from features.eligibility import RuleError

    try:
        yield
    except (UsageError, DataValidationError, RuleError, FileNotFoundError, ValueError) as exc:  # noqa: B014
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        # A path the user named that cannot be written or read (a directory given as --out, no permission).
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        # Recognised by class name, not by importing MLflow here: its import (seconds) stays out of every command
        # that does not talk to it.
        if not any(
            (c.__module__, c.__qualname__) == ("mlflow.exceptions", "MlflowException") for c in type(exc).__mro__
        ):
            raise
        message = " ".join(str(exc.message if hasattr(exc, "message") else exc).split())
        typer.echo(f"error: MLflow: {message}", err=True)
        raise typer.Exit(2) from None


def _parse_time(value: str, flag: str = "--as-of") -> datetime:
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{flag} {value!r} is not a date or timestamp") from exc
    # pandas reads "" and "NaT" as the missing time, which is no cut-off at all.
    if pd.isna(ts):
        raise UsageError(f"{flag} {value!r} is not a date or timestamp (for example 2024-06-30)")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _optional_time(value: str | None, flag: str = "--as-of") -> datetime | None:
    """The parsed time, or None when the flag was not given (an empty value is an error, not the default)."""
    return None if value is None else _parse_time(value, flag)


def _check_out(out: Path, flag: str = "--out") -> None:
    """Fail before any work when the output path cannot become a table file."""
    if out.suffix not in (".parquet", ".csv"):
        raise UsageError(f"{flag} {out}: must end in .parquet or .csv")
    if out.is_dir():
        raise UsageError(f"{flag} {out} is a directory; name a .parquet or .csv file")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _guarded(command: Callable[P, None]) -> Callable[P, None]:
    """Run a command with logging set up and its client mistakes reported as ``error: ...``, exit code 2."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        _setup_logging()
        with _client_errors():
            command(*args, **kwargs)

    return run


@features_app.command("build")
@_guarded
def features_build(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="output file (.parquet or .csv)")],
    as_of: AsOfOpt = None,
    response_window_days: Annotated[
        int, typer.Option(help="days after an offer when its outcome counts as known (no responded_ts)", min=0)
    ] = 14,
    engine: Annotated[str, typer.Option(help="where the feature SQL runs: duckdb or spark")] = "duckdb",
) -> None:
    """Write the customer-level feature table at T."""
    from features.data import load_data_dir
    from features.pipeline import FeatureConfig, build_features, default_as_of, require_population, write_frame

    _check_out(out)
    t = _optional_time(as_of)
    con, _ = load_data_dir(data)
    t = t or default_as_of(con)
    from features.engines import open_engine

    eng = open_engine(engine)  # type: ignore[arg-type]
    try:
        frame = build_features(con, t, FeatureConfig(response_window_days=response_window_days), eng)
    finally:
        eng.close()
    require_population(con, frame, t)
    write_frame(frame, out)
    typer.echo(f"wrote {len(frame)} customers x {frame.shape[1] - 1} features at {t:%Y-%m-%d %H:%M} to {out}")


@features_app.command("materialize")
@_guarded
def features_materialize(
    data: DataOpt,
    as_of: AsOfOpt = None,
    engine: Annotated[str, typer.Option(help="where the feature SQL runs: duckdb or spark")] = "duckdb",
) -> None:
    """Write every known customer's latest features to the online store that `serve` reads."""
    from features.materialize import materialize
    from features.settings import load_settings

    settings = load_settings()
    n, t = materialize(data, _optional_time(as_of), settings, engine=engine)  # type: ignore[arg-type]
    where = settings.online_store_url or settings.online_store_dir
    typer.echo(f"online store: {n} customers as of {t:%Y-%m-%d %H:%M} in {where}")


def _print_training(result: object) -> None:
    for name, res in result.models.items():  # type: ignore[attr-defined]
        if res.skipped:
            typer.echo(f"{name}: skipped ({res.skipped})")
            continue
        shown = {k: v for k, v in res.metrics.items() if not k.startswith(("rows_", "base_"))}
        figures = ", ".join(f"{k}={v:.3f}" for k, v in list(shown.items())[:6])
        typer.echo(f"{name}: version {res.version} ({res.alias}); holdout {figures}")
        for note in res.notes:
            typer.echo(f"  note: {note}")


@app.command("train")
@_guarded
def train_cmd(
    data: DataOpt,
    as_of: AsOfOpt = None,
    horizon_days: Annotated[int, typer.Option("--horizon-days", help="churn and spend horizon H")] = 90,
    cltv_horizon_days: Annotated[int, typer.Option("--cltv-horizon-days", help="long-run value horizon")] = 365,
    models: Annotated[
        str | None, typer.Option(help="comma-separated model kinds, e.g. churn,cltv,next_best_offer (default: all)")
    ] = None,
    promote: Annotated[bool, typer.Option("--promote", help="make the new versions champion")] = False,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    engine: Annotated[str, typer.Option(help="where the snapshots' feature and label SQL runs: duckdb or spark")] = (
        "duckdb"
    ),
    offer_value: Annotated[
        str,
        typer.Option(
            "--offer-value",
            help="what the offer policy is decided in: auto (the logged spend where offers log it, else acceptance "
            "x the catalog's value) or acceptance",
        ),
    ] = "auto",
) -> None:
    """Train churn, CLTV and next-best-offer models; log them to MLflow and register new versions."""
    from features.settings import load_settings
    from training.config import MODEL_NAMES, TrainConfig
    from training.train import train

    names = MODEL_NAMES if models is None else tuple(m.strip() for m in models.split(",") if m.strip())
    if not names:
        raise UsageError(f"--models {models!r} names no model; one or more of {','.join(MODEL_NAMES)}")
    try:
        config = TrainConfig(
            horizon_days=horizon_days,
            cltv_horizon_days=cltv_horizon_days,
            models=names,
            promote=promote,
            seed=seed,
            engine=engine,
            offer_value=offer_value,
        )
    except Exception as exc:  # pydantic's message names the bad field
        raise UsageError(str(exc)) from exc
    t = _optional_time(as_of)
    settings = load_settings()
    result = train(data, t, config, settings)
    typer.echo(f"MLflow run {result.run_id} (tracking {settings.tracking_uri})")
    _print_training(result)


@app.command("predict")
@_guarded
def predict_cmd(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="output file (.parquet or .csv)")],
    as_of: AsOfOpt = None,
) -> None:
    """Batch-score every customer active before T with the champion models."""
    from features.pipeline import write_frame
    from features.settings import load_settings
    from training.predict import predict

    _check_out(out)
    frame, t = predict(data, _optional_time(as_of), load_settings())
    write_frame(frame, out)
    typer.echo(f"scored {len(frame)} customers at {t:%Y-%m-%d %H:%M} into {out}")


@app.command("evaluate")
@_guarded
def evaluate_cmd(
    data: DataOpt,
    as_of: Annotated[str, typer.Option("--as-of", help="past cut-off T; outcomes come from [T, T+H)")],
    alias: Annotated[str, typer.Option("--alias", help="registry alias or version to evaluate")] = "champion",
    horizon_days: Annotated[int, typer.Option("--horizon-days", help="outcome window H")] = 90,
) -> None:
    """Score registered churn/CLTV models on what happened after a past cut-off (logged to MLflow)."""
    from features.settings import load_settings
    from training.evaluate import evaluate

    results = evaluate(data, _parse_time(as_of), load_settings(), alias, horizon_days)
    for name, metrics in results.items():
        figures = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k not in ("version", "in_sample"))
        warn = "  (IN-SAMPLE: T is before the model's training as-of)" if metrics["in_sample"] else ""
        typer.echo(f"{name} v{int(metrics['version'])}: {figures}{warn}")


@app.command("promote")
@_guarded
def promote_cmd(
    model: Annotated[str, typer.Argument(help="churn, cltv or next_best_offer")],
    version: Annotated[int, typer.Argument(help="registered version number")],
    alias: Annotated[str, typer.Option("--alias", help="alias to move")] = "champion",
) -> None:
    """Move a registry alias (champion/challenger) to a model version."""
    from features import registry
    from features.settings import load_settings
    from training.config import MODEL_NAMES

    if model not in MODEL_NAMES:
        raise UsageError(f"unknown model {model!r}; one of {', '.join(MODEL_NAMES)}")
    try:
        registry.validate_alias(alias)
    except ValueError as exc:
        raise UsageError(f"--alias: {exc}") from exc
    registry.promote(registry.configure(load_settings()), model, version, alias)
    typer.echo(f"{model}@{alias} -> version {version}")


@app.command("demo")
@_guarded
def demo_cmd(
    data: DataOpt = Path("demo-data"),
    customers: Annotated[int, typer.Option("--customers", help="synthetic customers to generate")] = 5000,
    force: Annotated[
        bool, typer.Option("--force", help="overwrite DIR even if it holds files an earlier demo did not write")
    ] = False,
) -> None:
    """Synthetic data, features, three trained and registered models and the online store, end to end."""
    from features.settings import load_settings
    from training.demo import run_demo

    settings = load_settings()
    result = run_demo(data, customers, settings, force=force)
    typer.echo(f"data:          {result.data_dir}/ (canonical tables, {customers} synthetic customers)")
    typer.echo(f"MLflow:        {settings.tracking_uri}  (mlflow ui --backend-store-uri {settings.tracking_uri})")
    typer.echo(f"training run:  {result.train.run_id} at as-of {result.train.as_of:%Y-%m-%d}")
    _print_training(result.train)
    typer.echo(f"online store:  {result.customers_in_store} customers as of {result.store_as_of:%Y-%m-%d}")
    typer.echo(f"API key:       {result.api_key}  (stored in {result.api_key_file})")
    typer.echo("next:          cxpredict serve --port 3000")


@app.command("serve")
@_guarded
def serve_cmd(
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 3000,
    host: Annotated[str, typer.Option("--host", help="interface to bind")] = "127.0.0.1",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=64, help="worker processes (default: one per usable core, at most 4)"),
    ] = None,
) -> None:
    """Start the BentoML service on the registry's champion models and the online store."""
    from features.scoring import FeatureSetMismatch
    from serving.cli_serve import serve
    from serving.startup import StartupError

    try:
        serve(port, host, workers)
    except (StartupError, FeatureSetMismatch) as exc:
        raise UsageError(str(exc)) from exc


@app.command("import")
@_guarded
def import_dataset(
    name: Annotated[str, typer.Argument(help="online-retail, complete-journey, hillstrom, telco or cdnow")],
    source: Annotated[Path, typer.Argument(help="folder of the public dataset")],
    out: Annotated[Path, typer.Option("--out", help="data directory to write the canonical tables to")],
) -> None:
    """Turn a public dataset into the canonical tables."""
    from features.importers import run_import

    counts = run_import(name, source, out)
    for table, n in counts.items():
        typer.echo(f"{table}: {n} rows")
    typer.echo(f"wrote {out}")


@ab_app.command("start")
@_guarded
def ab_start(
    name: Annotated[str, typer.Argument(help="experiment name (letters, digits, _ . -)")],
    model: Annotated[str, typer.Option("--model", help="churn, cltv, next_best_offer or personalize")],
    variant: Annotated[
        list[str], typer.Option("--variant", help="ALIAS=SHARE or VERSION=SHARE; repeat; the first is the control")
    ],
    shadow: Annotated[
        str | None, typer.Option("--shadow", help="alias or version scored and logged, never returned")
    ] = None,
    holdout: Annotated[float, typer.Option("--holdout", help="share of customers that get no offer")] = 0.0,
    outcome: Annotated[str, typer.Option("--outcome", help="feedback outcome the report analyses")] = "converted",
) -> None:
    """Declare and start an experiment (the running service picks it up within seconds)."""
    from features.settings import load_settings
    from serving import ab

    experiment, resolved = ab.start(load_settings(), name, model, variant, shadow, holdout, outcome)
    typer.echo(f"started {experiment.name} on {experiment.model}:")
    for arm, share in experiment.arms():
        versions = ", ".join(f"{m} v{v}" for m, v in resolved.get(arm, {}).items()) or "champions, no offer"
        typer.echo(f"  {arm:<12} {share:>6.1%}  ({versions})")
    if experiment.shadow:
        versions = ", ".join(f"{m} v{v}" for m, v in resolved[experiment.shadow].items())
        typer.echo(f"  shadow {experiment.shadow} ({versions}): scored and logged, never returned")


@ab_app.command("stop")
@_guarded
def ab_stop(name: Annotated[str, typer.Argument(help="experiment name")]) -> None:
    """Stop a running experiment (its decisions stay for the report)."""
    from features.settings import load_settings
    from serving import ab

    experiment = ab.stop(load_settings(), name)
    typer.echo(f"stopped {experiment.name} at {experiment.stopped_at:%Y-%m-%d %H:%M:%S} UTC")


@ab_app.command("list")
@_guarded
def ab_list() -> None:
    """All experiments with their state and the decisions logged so far."""
    from features.settings import load_settings
    from serving import ab

    rows = ab.list_experiments(load_settings())
    if not rows:
        typer.echo("no experiments (start one with `cxpredict ab start`)")
        return
    typer.echo(f"{'name':<20} {'model':<16} {'status':<8} {'decisions':>9} {'customers':>9}  variants")
    for r in rows:
        extra = (f", holdout={r['holdout']:g}" if r["holdout"] else "") + (
            f", shadow={r['shadow']}" if r["shadow"] else ""
        )
        typer.echo(
            f"{r['name']:<20} {r['model']:<16} {r['status']:<8} {r['decisions']:>9} {r['customers']:>9}  "
            f"{r['variants']}{extra}"
        )


@ab_app.command("report")
@_guarded
def ab_report(
    name: Annotated[str, typer.Argument(help="experiment name")],
    html: Annotated[
        Path | None, typer.Option("--html", help="HTML report file (default $CXPREDICT_HOME/reports/NAME.html)")
    ] = None,
) -> None:
    """The A/B result per variant, on the terminal and as an HTML report with plots."""
    from features.settings import load_settings
    from serving import ab

    if html is not None and html.is_dir():
        raise UsageError(f"--html {html} is a directory; name the report file (for example {html / name}.html)")
    text, path = ab.report(load_settings(), name, html)
    typer.echo(text, nl=False)
    typer.echo(f"HTML report: {path}")


@ab_app.command("ingest")
@_guarded
def ab_ingest(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet: decision_id, outcome[, value][, ts]")],
) -> None:
    """Load feedback in bulk (all or nothing; repeats of stored feedback are skipped)."""
    from features.settings import load_settings
    from serving import ab

    result = ab.ingest(load_settings(), file)
    typer.echo(f"{result.inserted} feedback rows stored, {result.duplicates} already present")


@app.command("forget")
@_guarded
def forget_cmd(
    customer_ids: Annotated[list[str], typer.Argument(help="customer ids to erase")],
) -> None:
    """Erase customers from the online store, the decision log and feedback, and the reports; say what went."""
    from features.settings import load_settings
    from serving import privacy

    settings = load_settings()
    report = privacy.forget(settings, customer_ids)
    for line in report.lines(settings):
        typer.echo(line)
    typer.echo("note: the input data still holds them; remove them there before the next `features materialize`")


@app.command("export")
@_guarded
def export_cmd(customer_id: Annotated[str, typer.Argument(help="the customer's id")]) -> None:
    """Print everything cxpredict holds about one customer as JSON."""
    import json

    from features.settings import load_settings
    from serving import privacy

    typer.echo(json.dumps(privacy.export(load_settings(), customer_id), indent=2, default=str, ensure_ascii=False))


@app.command("retention")
@_guarded
def retention_cmd(
    days: Annotated[
        int | None, typer.Option("--days", min=1, help="retention period (default CXPREDICT_RETENTION_DAYS, 400)")
    ] = None,
) -> None:
    """Erase decisions and feedback older than the retention period (run it daily; `serve` also does)."""
    from features.settings import load_settings
    from serving import privacy

    settings = load_settings()
    if days is not None:
        settings = settings.model_copy(update={"retention_days": days})
    counts = privacy.purge_expired(settings)
    typer.echo(
        f"erased {counts['decisions']} decisions and {counts['feedback']} feedback records older than "
        f"{settings.retention_days} days"
    )


@app.command("target")
@_guarded
def target_cmd(
    data: DataOpt,
    budget: Annotated[float, typer.Option("--budget", help="most total offer cost (the catalog's cost units)")],
    out: Annotated[Path, typer.Option("--out", help="campaign file (.csv or .parquet)")],
    as_of: AsOfOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="write the file but log no decisions")] = False,
) -> None:
    """A retention campaign: the customers and offers with the most value saved within the budget."""
    from features.settings import load_settings
    from serving.target import run_target

    _check_out(out)
    result = run_target(data, _optional_time(as_of), budget, out, load_settings(), dry_run=dry_run)
    share = result.value_saved / result.upper_bound if result.upper_bound > 0 else 1.0
    typer.echo(
        f"chose {len(result.campaign)} customers at {result.as_of:%Y-%m-%d}: cost {result.spent:,.2f} of "
        f"{result.budget:,.2f}, expected value saved {result.value_saved:,.2f} ({share:.1%} of the LP bound "
        f"{result.upper_bound:,.2f})"
    )
    held = ", ".join(f"{k} {v}" for k, v in result.withheld.items())
    typer.echo(f"held back by the contact policy: {held}")
    ev = result.evaluation
    if "skipped" in ev:
        typer.echo(f"baselines not evaluated: {ev['skipped']}")
    else:
        note = " (IN-SAMPLE: the offer model saw these offers)" if ev["in_sample"] else ""
        typer.echo(f"doubly robust value on {ev['customers']} logged offers from {ev['cut'][:10]}{note}, {ev['on']}:")
        for name in ("value_saved", "churn_risk", "cltv", "random"):
            est = ev[name]["total"]
            line = f"  {name:<12} {est.value:>10,.2f}  [{est.low:,.2f}, {est.high:,.2f}]"
            if name != "value_saved":
                gain = ev[f"diff_{name}"]
                line += f"   target minus it {gain.value:+,.2f} [{gain.low:+,.2f}, {gain.high:+,.2f}]"
            typer.echo(line)
    logged = "nothing logged (--dry-run)" if dry_run else f"{result.logged} decisions logged (channel campaign)"
    typer.echo(f"wrote {out}; {logged}; MLflow run {result.run_id}")


outcomes_app = typer.Typer(no_args_is_help=True, help="Outcomes of logged decisions, from the data.")
app.add_typer(outcomes_app, name="outcomes")


@outcomes_app.command("sync")
@_guarded
def outcomes_sync(
    data: DataOpt,
    horizon_days: Annotated[int, typer.Option("--horizon-days", help="outcome window H after each decision")] = 90,
) -> None:
    """Record purchased, spend and retained for every logged decision whose horizon the data covers."""
    from features.settings import load_settings
    from serving.outcomes import sync

    result = sync(data, load_settings(), horizon_days)
    typer.echo(
        f"{result.decisions} decisions: {result.complete} with a complete {horizon_days}-day window in the data "
        f"(ends {result.data_end:%Y-%m-%d}), {result.pending} still open; {result.inserted} outcomes recorded, "
        f"{result.duplicates} already there"
    )


@app.command("roi")
@_guarded
def roi_cmd(
    since: Annotated[str | None, typer.Option("--since", help="only decisions from this date on (UTC)")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="also write the report as one HTML page")] = None,
) -> None:
    """What the decisions earned against the global holdout: incremental revenue, retained, cost, ROI."""
    from features.settings import load_settings
    from serving.roi import roi

    if html is not None and html.is_dir():
        raise UsageError(f"--html {html} is a directory; name the report file (for example {html / 'roi.html'})")
    _, text = roi(load_settings(), _optional_time(since, "--since"), html)
    typer.echo(text, nl=False)
    if html is not None:
        typer.echo(f"HTML report: {html}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
