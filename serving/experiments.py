"""A/B experiments between model versions: their declaration in ``experiments.yaml`` and the traffic assignment.

An experiment names a model (``churn``, ``cltv``, ``next_best_offer`` or the whole ``personalize`` bundle), its
variants as registry aliases (``champion``) or versions (``3``) with traffic shares, an optional ``shadow``
variant that is scored and logged but never returned, and a ``holdout`` share that gets no offer. The file
``$CXPREDICT_HOME/experiments.yaml`` (or the one ``CXPREDICT_EXPERIMENTS`` names, which replicas share) is written
by ``cxpredict ab start/stop`` or by hand; ``cxpredict serve`` re-reads it while running.

A customer's arm is a pure function of (experiment name, customer id): the first 64 bits of a SHA-256 hash,
read as a number in [0, 1), fall into the arm's slice of the cumulative shares (holdout first). The same
customer therefore gets the same arm on every request, after restarts and on every replica.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.kinds import KIND_NAMES, NEXT_BEST_OFFER
from features.private_files import write_private_text
from features.settings import Settings
from serving.layout import EVERY_MODEL, EXPERIMENTS_FILE

HOLDOUT = "holdout"
#: The models each experiment target swaps (one kind, or all of them); the other models stay on their champion.
TARGET_MODELS: dict[str, tuple[str, ...]] = {**{name: (name,) for name in KIND_NAMES}, EVERY_MODEL: KIND_NAMES}
TARGETS: tuple[str, ...] = tuple(TARGET_MODELS)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REF = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_-]{0,63}|[1-9][0-9]{0,8})$")
_SHARE_TOLERANCE = 1e-6
#: The targets where a holdout means something: its customers get no offer.
HOLDOUT_TARGETS: tuple[str, ...] = (NEXT_BEST_OFFER.name, EVERY_MODEL)
#: The ``cxpredict ab start`` option that sets each field, for messages.
_FLAGS = {
    "name": "experiment name",
    "model": "--model",
    "variants": "--variant",
    "shadow": "--shadow",
    "holdout": "--holdout",
    "outcome": "--outcome",
}


class ExperimentError(ValueError):
    """An experiment declaration or command that cannot be applied (the message says why)."""


class Variant(BaseModel):
    """One arm: a registry alias (``champion``) or version number (``3``) and its share of the traffic.

    Attributes:
        ref: Registry alias or version number; also the arm's name in the decision log and the report.
        share: Fraction of the experiment's customers in this arm (0 < share <= 1).
    """

    model_config = ConfigDict(extra="forbid")

    ref: str = Field(description="registry alias (e.g. champion) or version number (e.g. 3)")
    share: float = Field(gt=0.0, le=1.0, allow_inf_nan=False, description="fraction of customers in this arm")

    @field_validator("ref", mode="before")
    @classmethod
    def _ref_ok(cls, value: object) -> str:
        value = str(value).strip()
        if value == HOLDOUT or not _REF.match(value):
            raise ValueError(
                f"variant {value!r} must be a registry alias (letters, digits, _ or -) or a version number, "
                f"and not '{HOLDOUT}'"
            )
        return value

    @property
    def version(self) -> int | None:
        """The version number when ``ref`` is one, else None (an alias)."""
        return int(self.ref) if self.ref.isdigit() else None


class Experiment(BaseModel):
    """One experiment as declared in ``experiments.yaml``.

    Attributes:
        name: Unique name (letters, digits, ``_ . -``); part of the assignment hash.
        model: What the variants swap: one model or the whole ``personalize`` bundle.
        variants: Arms in order; the first is the control of the report.
        shadow: Optional alias or version scored on the same requests, logged, never returned.
        holdout: Share of customers that get no offer (scored by the champions, logged as arm ``holdout``).
        outcome: The feedback outcome the report analyses.
        status: ``running`` routes traffic; ``stopped`` keeps the record for the report.
        started_at: When it was started (UTC).
        stopped_at: When it was stopped (UTC), if it was.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    model: Literal[TARGETS]  # type: ignore[valid-type]
    variants: list[Variant] = Field(min_length=1)
    shadow: str | None = None
    holdout: float = Field(default=0.0, ge=0.0, lt=1.0)
    outcome: str = "converted"
    status: Literal["running", "stopped"] = "running"
    started_at: datetime | None = None
    stopped_at: datetime | None = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"experiment name {value!r} must be 1-64 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("shadow", mode="before")
    @classmethod
    def _shadow_ok(cls, value: object) -> str | None:
        if value is None:
            return None
        ref = str(value).strip()
        if ref == HOLDOUT or not _REF.match(ref):
            raise ValueError(
                f"shadow {ref!r} must be a registry alias (letters, digits, _ or -) or a version number, "
                f"and not '{HOLDOUT}'"
            )
        return ref

    @model_validator(mode="after")
    def _shares_ok(self) -> Experiment:
        refs = [v.ref for v in self.variants]
        if len(set(refs)) != len(refs):
            raise ValueError(f"experiment {self.name!r} lists a variant twice: {refs}")
        total = sum(v.share for v in self.variants) + self.holdout
        if not math.isclose(total, 1.0, abs_tol=_SHARE_TOLERANCE):
            raise ValueError(
                f"experiment {self.name!r}: variant shares plus holdout must sum to 1, got {total:.6g} "
                f"({', '.join(f'{v.ref}={v.share:g}' for v in self.variants)}, holdout={self.holdout:g})"
            )
        if self.shadow is not None and self.shadow in refs:
            raise ValueError(f"experiment {self.name!r}: shadow {self.shadow!r} is also a served variant")
        return self

    @property
    def models(self) -> tuple[str, ...]:
        """The registered models this experiment swaps."""
        return TARGET_MODELS[self.model]

    def arms(self) -> list[tuple[str, float]]:
        """``(arm, share)`` in assignment order: the holdout (when it has a share) first, then the variants."""
        arms = [(HOLDOUT, self.holdout)] if self.holdout > 0 else []
        return arms + [(v.ref, v.share) for v in self.variants]


class ExperimentsFile(BaseModel):
    """The whole ``experiments.yaml``."""

    model_config = ConfigDict(extra="forbid")

    experiments: list[Experiment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentsFile:
        names = [e.name for e in self.experiments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"experiment name(s) used twice: {dupes}")
        running = [e.name for e in self.experiments if e.status == "running"]
        if len(running) > 1:
            # A personalize request touches every model, so two running experiments would both claim it and
            # each would see a biased sample; one at a time keeps every comparison clean.
            raise ValueError(f"only one experiment can run at a time, but {running} are running — stop one first")
        return self

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``.

        Raises:
            ExperimentError: there is none.
        """
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        known = ", ".join(e.name for e in self.experiments) or "none"
        raise ExperimentError(f"no experiment named {name!r} (known: {known})")

    def running(self) -> list[Experiment]:
        """The experiments that route traffic."""
        return [e for e in self.experiments if e.status == "running"]


def experiments_path(settings: Settings) -> Path:
    """Where the experiments file lives: ``CXPREDICT_EXPERIMENTS`` when set, else under ``$CXPREDICT_HOME``.

    Replicas of one service (each with its own ``CXPREDICT_HOME``) must share one experiments file, so
    ``CXPREDICT_EXPERIMENTS`` names a path on a file system every replica and ``cxpredict ab`` can reach (a shared
    volume): each ``serve`` parent checks it every second and resolves the experiment's arms in the shared registry,
    so all replicas route the same customer to the same arm.
    """
    return settings.experiments_file or Path(settings.home) / EXPERIMENTS_FILE


def load_experiments(path: Path) -> ExperimentsFile:
    """Read and validate an experiments file; a missing file is an empty one.

    Raises:
        ExperimentError: the file is not valid YAML or breaks a rule (the message names the file and field).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ExperimentsFile()
    except (OSError, UnicodeDecodeError) as exc:  # unreadable, or saved in another encoding by an editor
        raise ExperimentError(f"{path}: cannot be read as UTF-8 text: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return ExperimentsFile()
    try:
        return ExperimentsFile.model_validate(data)
    except ValidationError as exc:
        raise ExperimentError(f"{path}: {describe_validation_error(exc)}") from exc


def save_experiments(path: Path, experiments: ExperimentsFile) -> None:
    """Write the experiments file atomically (a reader never sees half a file)."""
    data = experiments.model_dump(mode="json", exclude_none=True)
    write_private_text(Path(path), yaml.safe_dump(data, sort_keys=False))  # owner-only, like all of the home


def parse_variant(spec: str) -> Variant:
    """``ALIAS=SHARE`` or ``VERSION=SHARE`` from the command line.

    Raises:
        ExperimentError: the spec is malformed.
    """
    ref, sep, share = spec.partition("=")
    if not sep:
        raise ExperimentError(f"--variant {spec!r}: expected ALIAS=SHARE or VERSION=SHARE, e.g. champion=0.5")
    try:
        value = float(share)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ExperimentError(
            f"--variant {spec!r}: the share must be a number between 0 and 1 (above 0), "
            f"e.g. {ref.strip() or 'champion'}=0.5"
        )
    try:
        return Variant(ref=ref.strip(), share=value)
    except ValidationError as exc:
        raise ExperimentError(
            f"--variant {spec!r}: {describe_validation_error(exc, flags=True, located=False)}"
        ) from exc


def describe_validation_error(exc: ValidationError, flags: bool = False, located: bool = True) -> str:
    """Pydantic's errors as plain sentences, each naming its field (no "Value error, " prefix, no links).

    Args:
        exc: The validation error.
        flags: Name fields by their ``cxpredict ab start`` option (``--holdout``) rather than their path.
        located: Prefix each message with its field.
    """
    problems = []
    for error in exc.errors(include_url=False):
        # Our validators' messages are whole sentences; pydantic would prefix them with "Value error, ".
        cause = (error.get("ctx") or {}).get("error")
        message = str(cause) if error["type"] == "value_error" and cause is not None else error["msg"]
        loc = [str(p) for p in error["loc"]]
        if flags and loc:
            where = _FLAGS.get(loc[0], loc[0])
        else:
            where = ".".join(loc) or ("" if error["type"] == "value_error" else "(top level)")
        problems.append(f"{where}: {message}" if located and where else message)
    return "; ".join(problems)


def new_experiment(
    name: str,
    model: str,
    variants: Sequence[Variant],
    shadow: str | None = None,
    holdout: float = 0.0,
    outcome: str = "converted",
    now: datetime | None = None,
) -> Experiment:
    """Validate a declaration for ``cxpredict ab start``; messages name the command's options.

    Beyond what a declaration in the file must satisfy, a new experiment must compare something (two variants, or
    one beside a holdout or a shadow), and a holdout only applies where it withholds an offer.

    Raises:
        ExperimentError: the declaration is invalid (the message names the option and says why).
    """
    if model not in TARGETS:
        raise ExperimentError(f"--model {model!r}: choose one of {', '.join(TARGETS)}")
    if (
        isinstance(holdout, bool)
        or not isinstance(holdout, int | float)
        or not (math.isfinite(holdout) and 0 <= holdout < 1)
    ):
        raise ExperimentError(f"--holdout {holdout!r}: must be a number from 0 up to (not including) 1, e.g. 0.1")
    if holdout > 0 and model not in HOLDOUT_TARGETS:
        raise ExperimentError(
            f"--holdout applies only to --model {' or '.join(HOLDOUT_TARGETS)}: its customers get no offer, which "
            f"means nothing for --model {model}"
        )
    # One served variant is still an experiment beside a holdout or a shadow (scored and logged, never served).
    if len(variants) == 1 and holdout == 0 and shadow is None:
        alternative = ", a --holdout" if model in HOLDOUT_TARGETS else ""
        raise ExperimentError(
            f"experiment {name!r} has one --variant, no holdout and no shadow: nothing to compare; add a second "
            f"--variant (e.g. challenger=0.5){alternative} or a --shadow"
        )
    try:
        return Experiment(
            name=name,
            model=model,  # type: ignore[arg-type]
            variants=list(variants),
            shadow=shadow,
            holdout=holdout,
            outcome=outcome,
            started_at=now or datetime.now(UTC),
        )
    except ValidationError as exc:
        raise ExperimentError(describe_validation_error(exc, flags=True)) from exc


def start_experiment(
    path: Path,
    name: str,
    model: str,
    variants: Sequence[Variant],
    shadow: str | None = None,
    holdout: float = 0.0,
    outcome: str = "converted",
    now: datetime | None = None,
) -> Experiment:
    """Declare and start an experiment in the file at ``path``: :func:`new_experiment`, then :func:`add_experiment`.

    Raises:
        ExperimentError: the declaration is invalid or clashes with another experiment.
    """
    experiment = new_experiment(name, model, variants, shadow=shadow, holdout=holdout, outcome=outcome, now=now)
    return add_experiment(path, experiment)


def add_experiment(path: Path, experiment: Experiment) -> Experiment:
    """Write a validated experiment into the file at ``path`` as running; returns it as written.

    A stopped experiment of the same name is replaced only when its definition is unchanged (restarting it);
    a running one or a different definition is refused, since its logged decisions belong to the old one.

    Raises:
        ExperimentError: the experiment clashes with another one in the file.
    """
    name = experiment.name
    current = load_experiments(path)
    others = [e for e in current.experiments if e.name != name]
    for old in current.experiments:
        if old.name != name:
            continue
        if old.status == "running":
            raise ExperimentError(f"experiment {name!r} is already running; stop it first or pick another name")
        same = old.model_dump(include={"model", "variants", "shadow", "holdout", "outcome"}) == experiment.model_dump(
            include={"model", "variants", "shadow", "holdout", "outcome"}
        )
        if not same:
            raise ExperimentError(
                f"experiment {name!r} exists (stopped) with another definition; its decisions would mix with the "
                "new one's — pick a new name"
            )
        experiment = experiment.model_copy(update={"started_at": old.started_at})
    try:
        updated = ExperimentsFile(experiments=[*others, experiment])
    except ValidationError as exc:
        raise ExperimentError(describe_validation_error(exc)) from exc
    save_experiments(path, updated)
    return experiment


def stop_experiment(path: Path, name: str, now: datetime | None = None) -> Experiment:
    """Stop a running experiment (its record stays for the report).

    Raises:
        ExperimentError: no such experiment, or it is already stopped.
    """
    current = load_experiments(path)
    experiment = current.get(name)
    if experiment.status == "stopped":
        raise ExperimentError(f"experiment {name!r} is already stopped")
    stopped = experiment.model_copy(update={"status": "stopped", "stopped_at": now or datetime.now(UTC)})
    save_experiments(path, ExperimentsFile(experiments=[stopped if e.name == name else e for e in current.experiments]))
    return stopped


def unit_interval(experiment: str, customer_id: str) -> float:
    """The customer's position in [0, 1) for an experiment: 64 bits of SHA-256 over (experiment, customer)."""
    digest = hashlib.sha256(f"{experiment}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(experiment: str, customer_id: str, arms: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The customer's arm and the probability with which it was assigned.

    Args:
        experiment: Experiment name (salts the hash so experiments are independent).
        customer_id: The randomisation unit.
        arms: ``(arm, share)`` in a fixed order; shares sum to 1.
    """
    u = unit_interval(experiment, customer_id)
    edge = 0.0
    for arm, share in arms:
        edge += share
        if u < edge:
            return arm, share
    # Shares sum to 1 within rounding: the top sliver belongs to the last arm.
    return arms[-1][0], arms[-1][1]
