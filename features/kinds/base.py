"""What every model kind provides: typed bundle metadata, an answer part, online scoring and batch columns.

A *kind* (churn, cltv, next best offer) is one module of :mod:`features.kinds` holding its whole scoring side: the
bundle class that reads its boosters, the pydantic model of its bundle metadata, the answer part the API
publishes, how it scores rows online and which columns it adds to batch ``predict``. Training's side of a kind
(fit, holdout evaluation, MLflow logging) is its module in :mod:`training.kinds`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

T = TypeVar("T")


class BundleMeta(BaseModel):
    """A bundle's metadata (its ``bundle.json`` without the encoder and booster files), common to every kind.

    Unknown fields are kept, not refused: a bundle trained by newer code can still be served, and they round-trip
    through :meth:`features.scoring.Bundle.save`. Assignments are validated, so a kind's typed fields stay typed.
    Item access (``meta["policy"]``) reads and sets the same fields, for code written against the JSON keys.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    feature_set_version: str | None = None
    trained_as_of: str | None = None
    response_window_days: int | None = None
    horizon_days: int | None = None

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and getattr(self, key, None) is not None

    def get(self, key: str, default: Any = None) -> Any:
        """The field's value, or ``default`` when it is missing or null (like ``dict.get`` on the JSON)."""
        value = getattr(self, key, None)
        return default if value is None else value

    def to_json(self) -> dict[str, Any]:
        """The fields as ``bundle.json`` stores them (nulls left out)."""
        return self.model_dump(exclude_none=True)


class Reason(TypedDict):
    """One feature pushing the score up, or holding it down."""

    feature: str
    description: str
    value: Annotated[
        float | str | None,
        Field(description="the customer's value as they know it (a category's label, not its code); null when missing"),
    ]
    contribution: Annotated[
        float | None,
        Field(
            description="SHAP contribution in the model's margin (log-odds for churn, log-spend for CLTV); null for "
            "a rule (a cancellation before T)"
        ),
    ]
    direction: Annotated[Literal["up", "down"], Field(description="up: pushes the score up; down: holds it down")]


class ScoreContext:
    """What scoring one set of rows shares across kinds: the rows, their encoded matrices and reusable answers.

    Models sharing an encoder share one matrix (``encode``), and an answer one kind needs from another (the churn
    probability feeds the CLTV fallback) is computed once, on first need (:meth:`shared`).

    Args:
        rows: The feature rows, in answer order.
        bundles: The loaded bundles by kind name (an absent kind is missing).
        encode: The encoded matrix of the rows for a kind's bundle.
    """

    __slots__ = ("_encode", "_shared", "bundles", "rows")

    def __init__(
        self, rows: Sequence[Mapping[str, Any]], bundles: Mapping[str, Any], encode: Callable[[str], np.ndarray]
    ) -> None:
        self.rows = rows
        self.bundles = bundles
        self._encode = encode
        self._shared: dict[str, Any] = {}

    def matrix(self, name: str) -> np.ndarray:
        """The rows encoded for kind ``name``'s bundle."""
        return self._encode(name)

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """``make()``, computed once per context under ``key``."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]  # type: ignore[no-any-return]


class ModelKind(ABC):
    """One model kind: its name, bundle class, metadata and answer part, and how it scores.

    Attributes:
        name: The kind's name: its registered model name, its manifest key, its answer part's JSON key.
        about: What it answers, in a few words (its route's description says it).
        bundle_type: The :class:`features.scoring.Bundle` subclass that loads and scores its bundles.
        part: Its answer part: a ``TypedDict`` that builds each answer (a plain dict, cheap on the request path) and
            whose schema ``/docs.json`` publishes (pydantic reads it like a model).
        columns: The columns it adds to batch ``predict`` (:func:`features.kinds.score_frame`).
    """

    name: ClassVar[str]
    about: ClassVar[str]
    bundle_type: ClassVar[type[Any]]
    part: ClassVar[Callable[..., Any]]
    columns: ClassVar[tuple[str, ...]]

    @abstractmethod
    def score(self, bundle: Any, ctx: ScoreContext) -> list[Any]:
        """The answer part (a :attr:`part` instance) for each of ``ctx.rows``, in order."""

    def unavailable(self, why: str) -> Any:
        """The part answered when no model of this kind is loaded."""
        return self.part(available=False, reason=why)

    @abstractmethod
    def frame(self, bundle: Any, x: np.ndarray, frame: Any, known: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Batch ``predict`` columns for a pandas feature frame encoded as ``x``.

        Args:
            bundle: This kind's bundle.
            x: ``frame`` encoded by the bundle.
            frame: The feature frame.
            known: Columns earlier kinds produced for the same frame (the CLTV fallback reads ``churn_probability``).
        """

    def __repr__(self) -> str:
        return f"<model kind {self.name}>"
