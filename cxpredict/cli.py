"""The ``cxpredict`` command line (CONTRACT §3): a thin typer layer over the features/training/serving packages.

Each command parses its flags, calls one function of the packages, and turns a client mistake (bad data, bad
flag) into a one-paragraph message on stderr and exit code 2. Heavy imports happen inside the commands so that
``cxpredict --help`` is instant.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Churn, CLTV and next-best-offer predictions.")
features_app = typer.Typer(no_args_is_help=True, help="Build feature tables and the online store.")
app.add_typer(features_app, name="features")

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
    except (UsageError, DataValidationError, RuleError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _parse_time(value: str, flag: str = "--as-of") -> datetime:
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{flag} {value!r} is not a date or timestamp") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run(fn: Callable[[], None]) -> None:
    _setup_logging()
    with _client_errors():
        fn()


@features_app.command("build")
def features_build(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="output file (.parquet or .csv)")],
    as_of: AsOfOpt = None,
    lookback_days: Annotated[int, typer.Option(help="activity window defining who is scored")] = 365,
) -> None:
    """Write the customer-level feature table at T."""

    def go() -> None:
        from features.data import load_data_dir
        from features.pipeline import FeatureConfig, build_features, default_as_of, write_frame

        if out.suffix not in (".parquet", ".csv"):
            raise UsageError(f"--out {out}: must end in .parquet or .csv")
        con, _ = load_data_dir(data)
        t = _parse_time(as_of) if as_of else default_as_of(con)
        frame = build_features(con, t, FeatureConfig(lookback_days=lookback_days))
        write_frame(frame, out)
        typer.echo(f"wrote {len(frame)} customers x {frame.shape[1] - 1} features at {t:%Y-%m-%d %H:%M} to {out}")

    _run(go)


@app.command("import")
def import_dataset(
    name: Annotated[str, typer.Argument(help="online-retail, complete-journey, hillstrom or telco")],
    source: Annotated[Path, typer.Argument(help="folder of the public dataset")],
    out: Annotated[Path, typer.Option("--out", help="data directory to write the canonical tables to")],
) -> None:
    """Turn a public dataset into the canonical tables."""

    def go() -> None:
        from features.importers import run_import

        counts = run_import(name, source, out)
        for table, n in counts.items():
            typer.echo(f"{table}: {n} rows")
        typer.echo(f"wrote {out}")

    _run(go)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
