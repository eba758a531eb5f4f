"""Human-readable A/B reports (CONTRACT §5): terminal text and one self-contained HTML file.

Both render an :class:`~serving.ab_stats.ExperimentResult`; the HTML file also plots the per-customer ``units``
frame the result was computed from. Matplotlib is imported only when an HTML report is written, and the figures
are drawn on an explicit Agg canvas, so importing this module neither loads matplotlib nor changes the process's
global backend.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.private_files import private_dir
from serving.ab_stats import RATE, VALUE, Comparison, ExperimentResult, validate_units

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SRM_WARNING = "SAMPLE RATIO MISMATCH — do not trust the comparison"

_METRIC_LABELS = {RATE: "outcome rate", VALUE: "value per customer"}


# --------------------------------------------------------------------------------------------------------------
# number formatting


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+,.{digits}f}" if signed else f"{value:,.{digits}f}"


def _pvalue(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2e}" if 0 < value < 1e-4 else f"{value:.4f}"


def _prob(value: float | None) -> str:
    # Rounding 0.99996 to "100.0%" would claim certainty.
    if value is None:
        return "n/a"
    if value > 0.999:
        return ">99.9%"
    if value < 0.001:
        return "<0.1%"
    return _pct(value, 1)


def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}%"


def _mean(comp: Comparison, value: float | None) -> str:
    return _pct(value) if comp.metric == RATE else _num(value)


def _diff(comp: Comparison, value: float | None) -> str:
    """Rate differences in percentage points, value differences in the value's unit."""
    if value is None:
        return "n/a"
    return f"{100 * value:+.2f} pp" if comp.metric == RATE else _num(value, signed=True)


def _srm_line(result: ExperimentResult) -> str:
    srm = result.srm
    stats_text = f"chi2={srm.chi2:.2f}, p={_pvalue(srm.p_value)}, threshold {srm.threshold:g}"
    if srm.mismatch:
        return f"SRM check: {SRM_WARNING} ({stats_text})"
    return f"SRM check: OK, customers per arm match the configured shares ({stats_text})"


def _variant_rows(result: ExperimentResult) -> list[list[str]]:
    return [
        [
            s.variant + (" (control)" if s.variant == result.control else ""),
            _pct(s.expected_share, 1),
            _pct(s.observed_share, 1),
            f"{s.customers:,}",
            f"{s.decisions:,}",
            f"{s.conversions:,}",
            _pct(s.outcome_rate),
            _num(s.value_per_customer),
            _num(s.value_sd),
        ]
        for s in result.variants
    ]


_VARIANT_HEADER = [
    "variant",
    "expected",
    "observed",
    "customers",
    "decisions",
    "conversions",
    "outcome rate",
    "value/customer",
    "value sd",
]


def _comparison_cells(comp: Comparison) -> dict[str, str]:
    ci = "n/a" if comp.ci_low is None else f"[{_diff(comp, comp.ci_low)}, {_diff(comp, comp.ci_high)}]"
    return {
        "metric": _METRIC_LABELS.get(comp.metric, comp.metric),
        "arms": f"{comp.variant} vs {comp.control}",
        "means": f"{_mean(comp, comp.variant_mean)} vs {_mean(comp, comp.control_mean)}",
        "difference": _diff(comp, comp.difference),
        "ci": ci,
        "lift": "n/a" if comp.relative_lift is None else f"{100 * comp.relative_lift:+.1f}%",
        "p": _pvalue(comp.p_value),
        "better": _prob(comp.prob_better),
    }


def _cuped_cells(comp: Comparison) -> dict[str, str] | None:
    if comp.cuped_difference is None:
        return None
    return {
        "difference": _diff(comp, comp.cuped_difference),
        "ci": f"[{_diff(comp, comp.cuped_ci_low)}, {_diff(comp, comp.cuped_ci_high)}]",
        "p": _pvalue(comp.cuped_p_value),
        "reduction": _pct(comp.variance_reduction, 0),
    }


# --------------------------------------------------------------------------------------------------------------
# text


def format_text(result: ExperimentResult, name: str) -> str:
    """Render the result for a terminal.

    Args:
        result: What :func:`serving.ab_stats.analyze` returned.
        name: Experiment name, shown in the title.

    Returns:
        Multi-line text: the per-arm table, one block per comparison (difference, interval, p-value, P(better),
        CUPED when applied) and the SRM line, which reads "SAMPLE RATIO MISMATCH — do not trust the comparison"
        when flagged.
    """
    level = _level(result.alpha)
    lines = [
        f"A/B experiment {name}: {result.customers:,} customers, control {result.control}, "
        f"{level} intervals (alpha {result.alpha:g})",
        "",
    ]
    rows = [_VARIANT_HEADER, *_variant_rows(result)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_VARIANT_HEADER))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    if result.srm.mismatch:
        # Said before the comparisons too, so nobody reads a lift without seeing it.
        lines += [f"!!! {SRM_WARNING} !!!", ""]
    for comp in result.comparisons:
        cells = _comparison_cells(comp)
        lines.append(f"{cells['metric']}: {cells['arms']}: {cells['means']}")
        lines.append(
            f"    difference {cells['difference']}, {level} CI {cells['ci']}, lift {cells['lift']}, "
            f"p-value {cells['p']}, P(better) {cells['better']}"
        )
        cuped = _cuped_cells(comp)
        if cuped is not None:
            lines.append(
                f"    CUPED: difference {cuped['difference']}, {level} CI {cuped['ci']}, p-value {cuped['p']}, "
                f"variance reduction {cuped['reduction']}"
            )
        caveat = "; " in comp.method if comp.metric == RATE else comp.cuped_difference is None
        if comp.p_value is None or caveat:
            lines.append(f"    note: {comp.method}")
    lines += ["", _srm_line(result)]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# plots


def _png(fig: Figure) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _colors(result: ExperimentResult) -> dict[str, str]:
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]
    return {s.variant: palette[i % len(palette)] for i, s in enumerate(result.variants)}


def _cumulative_plot(result: ExperimentResult, units: pd.DataFrame) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot()
    colors = _colors(result)
    for summary in result.variants:
        arm = units.loc[units["variant"] == summary.variant, ["first_ts", "converted"]]
        if arm.empty:
            continue
        arm = arm.sort_values("first_ts", kind="stable")
        converted = arm["converted"].to_numpy(dtype=float)
        rate = np.cumsum(converted) / np.arange(1, len(converted) + 1)
        when = pd.to_datetime(arm["first_ts"].to_numpy(dtype=float), unit="s").to_numpy()
        ax.step(when, rate, where="post", color=colors[summary.variant], label=summary.variant)
    ax.set_title("Cumulative outcome rate by first decision")
    ax.set_xlabel("first decision (UTC)")
    ax.set_ylabel("conversions / customers so far")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.autofmt_xdate()
    return _png(fig)


def _interval_plot(result: ExperimentResult) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 1.6 + 0.7 * max(1, len(result.comparisons) // 2)))
    colors = _colors(result)
    level = _level(result.alpha)
    for index, metric in enumerate((RATE, VALUE)):
        ax = fig.add_subplot(1, 2, index + 1)
        comps = [c for c in result.comparisons if c.metric == metric]
        scale = 100.0 if metric == RATE else 1.0
        labels = []
        for row, comp in enumerate(comps):
            labels.append(f"{comp.variant} vs {comp.control}")
            if comp.difference is None or comp.ci_low is None or comp.ci_high is None:
                ax.text(0, row, "n/a", ha="center", va="center", color="#666666")
                continue
            diff, low, high = comp.difference * scale, comp.ci_low * scale, comp.ci_high * scale
            color = colors.get(comp.variant, "#333333")
            ax.errorbar(diff, row, xerr=[[diff - low], [high - diff]], fmt="o", color=color, capsize=4)
            if comp.cuped_difference is not None and comp.cuped_ci_low is not None and comp.cuped_ci_high is not None:
                c_diff, c_low, c_high = comp.cuped_difference, comp.cuped_ci_low, comp.cuped_ci_high
                ax.errorbar(
                    c_diff, row - 0.25, xerr=[[c_diff - c_low], [c_high - c_diff]], fmt="s", color=color, alpha=0.55
                )
                ax.text(c_high, row - 0.25, " CUPED", va="center", fontsize=8, color="#555555")
        ax.axvline(0.0, color="black", linewidth=1)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(-0.75, max(len(labels), 1) - 0.25)
        ax.invert_yaxis()
        unit = "percentage points" if metric == RATE else "value per customer"
        ax.set_xlabel(f"difference ({unit}), {level} CI")
        ax.set_title(_METRIC_LABELS[metric])
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.srm-bad { background: #fde2e2; border: 2px solid #c00; padding: 0.8em; font-weight: bold; color: #900; }
.srm-ok { background: #e6f4ea; border: 1px solid #2a7; padding: 0.8em; }
.note { color: #666; font-size: 0.9em; }
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_document(result: ExperimentResult, name: str, cumulative_png: str, interval_png: str) -> str:
    level = _level(result.alpha)
    title = html.escape(f"A/B experiment {name}")
    srm_class = "srm-bad" if result.srm.mismatch else "srm-ok"
    comparison_rows = []
    cuped_rows = []
    notes = []
    for comp in result.comparisons:
        cells = _comparison_cells(comp)
        comparison_rows.append(
            [
                cells["arms"],
                cells["metric"],
                cells["means"],
                cells["difference"],
                cells["ci"],
                cells["lift"],
                cells["p"],
                cells["better"],
            ]
        )
        cuped = _cuped_cells(comp)
        if cuped is not None:
            cuped_rows.append([cells["arms"], cuped["difference"], cuped["ci"], cuped["p"], cuped["reduction"]])
        notes.append(f"{cells['arms']}, {cells['metric']}: {comp.method}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title><style>{_CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{result.customers:,} customers; control <b>{html.escape(result.control)}</b>; {level} intervals "
        f"(alpha {result.alpha:g}).</p>",
        f'<p class="{srm_class}">{html.escape(_srm_line(result))}</p>',
        "<h2>Arms</h2>",
        _table(_VARIANT_HEADER, _variant_rows(result)),
        "<h2>Comparisons with the control</h2>",
        _table(
            ["arms", "metric", "means", "difference", f"{level} CI", "lift", "p-value", "P(better)"],
            comparison_rows,
        ),
    ]
    if cuped_rows:
        parts += [
            "<h3>CUPED (value per customer adjusted for pre-period spend)</h3>",
            _table(["arms", "difference", f"{level} CI", "p-value", "variance reduction"], cuped_rows),
        ]
    parts += [
        "<h2>Cumulative outcome rate</h2>",
        f'<img src="data:image/png;base64,{cumulative_png}" alt="cumulative outcome rate per variant">',
        "<h2>Differences with intervals</h2>",
        f'<img src="data:image/png;base64,{interval_png}" alt="difference with interval per comparison">',
        "<h2>Methods</h2>",
        "<ul class=note>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(result: ExperimentResult, units: pd.DataFrame, path: Path, name: str, mode: int = 0o644) -> Path:
    """Write one self-contained HTML report (tables and base64 PNG plots), atomically.

    The document is fully rendered before anything touches the disk; it is then written to a temporary file in
    the target directory and moved over ``path`` with ``os.replace``, so readers see either the old report or the
    new one, and a failed write leaves no partial file behind.

    Args:
        result: What :func:`serving.ab_stats.analyze` returned for ``units``.
        units: The per-customer frame (uses ``variant``, ``first_ts`` and ``converted``).
        path: Target file; its parent directory is created.
        name: Experiment name, shown in the title (HTML-escaped).
        mode: The file's permissions (``ab.report`` passes 0600 under ``$CXPREDICT_HOME``, with a 0700 directory).

    Returns:
        ``path``.

    Raises:
        ValueError: ``units`` is not a valid per-customer frame.
        OSError: The file cannot be written (for example ``path`` is a directory).
    """
    validate_units(units)
    path = Path(path)
    document = _html_document(result, name, _cumulative_plot(result, units), _interval_plot(result))
    if mode & 0o077:
        path.parent.mkdir(parents=True, exist_ok=True)
    else:
        private_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # mkstemp creates the file 0600; a report outside the home is meant to be read by others.
            if mode != 0o600:
                os.fchmod(handle.fileno(), mode)
            handle.write(document)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return path
