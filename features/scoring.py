"""The scoring runtime shared by batch prediction and the online service: one way to turn features into answers.

A trained model is saved as a *bundle* directory: XGBoost boosters in their native format plus a small JSON
file (feature-set version, input columns, attribute encodings, calibration map, offer catalog). Loading a
bundle needs only numpy, xgboost and this module — no MLflow, pandas or scikit-learn — so the service worker
stays lean, and batch scoring and serving run the very same code (no training/serving skew).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import xgboost as xgb
from pydantic import BaseModel

from features.definitions import CANCELLED_FEATURE, describe, feature_names, feature_set_version
from features.forest import Forest, ForestStack
from features.treeshap import PathShap

if TYPE_CHECKING:  # the kinds import this module: their base is only named here
    from features.kinds.base import BundleMeta, Reason

META_FILE = "bundle.json"
#: Largest matrix (rows) predicted with the numpy forest rather than XGBoost: beyond it the forest's work grows with
#: the rows while XGBoost's cost stays mostly per call (benchmarks/serving_profile.py).
SMALL_BATCH = 4
#: Strongest factors listed each way (pushing the score up, holding it down).
TOP_REASONS = 3
#: Most categories of a text attribute kept in a bundle (the most common ones); the rest read as unknown.
MAX_CATEGORIES = 50
#: Fewest customers sharing a category for it to be kept in a bundle (a rarer value could single one out).
MIN_CATEGORY_CUSTOMERS = 10
#: A text attribute with more distinct values than this share of its customers is refused as a feature.
MAX_DISTINCT_SHARE = 0.5


class FeatureSetMismatch(RuntimeError):  # noqa: N818 - reads better at the raise site
    """A model was trained on a different feature set than the code computes."""


@dataclass
class Encoder:
    """Maps feature rows (behavioural features and ``attr_*`` attributes) to the model's float matrix.

    String attributes become the index of their category (learned at training); unknown categories and missing
    values become NaN, which XGBoost routes down its learned default branch.

    Attributes:
        columns: Model input columns in order.
        categories: For each string attribute, its known categories in code order.
        dropped: Attributes refused as features, with the reason (see :meth:`fit`).
    """

    columns: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.columns)}
        self._codes = {col: {v: float(i) for i, v in enumerate(cats)} for col, cats in self.categories.items()}
        self._numeric = [c for c in self.columns if c not in self._codes]
        self._numeric_at = np.asarray([self._index[c] for c in self._numeric], dtype=np.intp)
        self._coded = [(self._index[c], c) for c in self._codes]

    @classmethod
    def fit(
        cls,
        frame: Any,
        max_categories: int = MAX_CATEGORIES,
        min_customers: int = MIN_CATEGORY_CUSTOMERS,
        max_distinct_share: float = MAX_DISTINCT_SHARE,
    ) -> Encoder:
        """Learn the input columns and attribute categories from a training feature frame (pandas).

        The categories are stored in the bundle, so only common ones are kept: at most ``max_categories`` values,
        each seen for at least ``min_customers`` customers (counted by ``customer_id`` when the frame has it, else
        by row); rarer values read as unknown. A text attribute whose distinct values exceed
        ``max_distinct_share`` of its customers (an e-mail, a name, an id), or that keeps no value, is refused as
        a feature: it is left out of ``columns`` and ``dropped`` says why (without any of its values).
        """
        attrs = [c for c in frame.columns if str(c).startswith("attr_")]
        cats: dict[str, list[str]] = {}
        dropped: dict[str, str] = {}
        for col in attrs:
            if not (frame[col].dtype == object or str(frame[col].dtype) in ("string", "str", "category")):
                continue
            present = frame.loc[frame[col].notna(), [c for c in ("customer_id", col) if c in frame.columns]]
            values = present.astype(str).drop_duplicates()[col] if "customer_id" in present.columns else present[col]
            counts = values.astype(str).value_counts()
            units = int(present["customer_id"].nunique()) if "customer_id" in present.columns else len(present)
            if units and len(counts) / units > max_distinct_share and len(counts) > 1:
                dropped[col] = (
                    f"high-cardinality text: {len(counts) / units:.0%} of its {units} customers have a distinct "
                    f"value (more than {max_distinct_share:.0%}), so it identifies customers rather than describes them"
                )
                continue
            common = sorted(((-int(n), str(v)) for v, n in counts.items() if n >= min_customers))[:max_categories]
            if not common:
                dropped[col] = f"no value is shared by {min_customers} or more customers"
                continue
            cats[col] = sorted(v for _, v in common)
        return cls(
            columns=[*feature_names(), *(a for a in attrs if a not in dropped)], categories=cats, dropped=dropped
        )

    def _value(self, col: str, value: Any) -> float:
        if value is None:
            return math.nan
        codes = self._codes.get(col)
        if codes is not None:
            return codes.get(str(value), math.nan)
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode feature mappings (missing keys are NaN) into a float32 matrix."""
        out = np.full((len(rows), len(self.columns)), np.nan, dtype=np.float32)
        for i, row in enumerate(rows):
            values = [row.get(c) for c in self._numeric]
            try:
                # numpy reads None as NaN and numbers as float() does: a fifth of the time of value by value.
                out[i, self._numeric_at] = np.array(values, dtype=np.float64)
            except (TypeError, ValueError):  # a value float() cannot read (a stray string) is NaN, as below
                out[i, self._numeric_at] = [self._value(c, v) for c, v in zip(self._numeric, values, strict=True)]
            for j, col in self._coded:
                out[i, j] = self._value(col, row.get(col))
        return out

    def encode_frame(self, frame: Any) -> np.ndarray:
        """Encode a pandas feature frame column-wise (the fast path for batch scoring and training)."""
        out = np.full((len(frame), len(self.columns)), np.nan, dtype=np.float32)
        for j, col in enumerate(self.columns):
            if col not in frame.columns:
                continue
            series = frame[col]
            codes = self._codes.get(col)
            if codes is not None:
                out[:, j] = series.map(lambda v, c=codes: c.get(str(v), math.nan) if v is not None else math.nan)
            else:
                out[:, j] = np.asarray(series.astype("float64"), dtype=np.float32)
        return out

    def label(self, col: str, value: float) -> float | str | None:
        """A model input's value as the user knows it: a category's label (not its code), null when missing."""
        if not math.isfinite(value):
            return None  # JSON has no NaN or infinity: a missing value, or one beyond float32's range, is null
        cats = self.categories.get(col)
        if cats is not None:
            code = int(value)
            return cats[code] if 0 <= code < len(cats) else None
        return float(value)

    def to_json(self) -> dict[str, Any]:
        """Serialisable form."""
        return {"columns": self.columns, "categories": self.categories, "dropped": self.dropped}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Encoder:
        """Inverse of :meth:`to_json`."""
        return cls(
            columns=list(data["columns"]),
            categories={k: list(v) for k, v in data["categories"].items()},
            dropped=dict(data.get("dropped") or {}),
        )


def design_matrix(x: np.ndarray, n_offers: int, offer_index: np.ndarray) -> np.ndarray:
    """Rows of ``x`` with a one-hot block for the offer each row is scored under (index -1 = control).

    The single encoding of (customer, offer) used to fit the uplift model and to score every offer at once.

    Args:
        x: Customer features, shape (n, d).
        n_offers: Number of (non-control) offers.
        offer_index: Offer index per row, -1 for the control arm.
    """
    onehot = np.zeros((x.shape[0], n_offers), dtype=np.float32)
    rows = np.flatnonzero(offer_index >= 0)
    onehot[rows, offer_index[rows]] = 1.0
    return np.hstack([x.astype(np.float32, copy=False), onehot])


class Predictor:
    """One booster's predictions and SHAP contributions behind one seam: numpy fast paths, XGBoost's public API else.

    Once :meth:`prepare_small_batches` ran, matrices of up to :data:`SMALL_BATCH` rows are predicted by
    :class:`features.forest.Forest` (XGBoost's numbers in every bit, without its per-call work; see
    benchmarks/serving_profile.py); everything else takes ``Booster.inplace_predict``. SHAP contributions come from
    :class:`features.treeshap.PathShap` tables when the model allows (XGBoost's numbers up to float rounding),
    else from ``Booster.predict(..., pred_contribs=True)``.
    """

    def __init__(self, booster: xgb.Booster) -> None:
        self.booster = booster
        self._shap: PathShap | None = None
        self._shap_built = False
        self._forest: Forest | None = None
        self._forest_built = False

    def prepare_small_batches(self) -> None:
        """Build the numpy forest that predicts a few rows without XGBoost's per-call work (equal in every bit)."""
        if not self._forest_built:
            self._forest = Forest.from_booster(self.booster)
            self._forest_built = True

    def prepare_contributions(self) -> None:
        """Build the SHAP tables now, not on the first call that needs them."""
        if not self._shap_built:
            self._shap = PathShap.from_booster(self.booster)
            self._shap_built = True

    def forest_for(self, x: np.ndarray) -> Forest | None:
        """The numpy forest when it is prepared and ``x`` is a small batch it takes; else None (XGBoost's turn)."""
        forest = self._forest
        if (
            forest is not None
            and x.dtype == np.float32
            and x.ndim == 2
            and 0 < x.shape[0] <= SMALL_BATCH
            and x.shape[1] == forest.n_features
        ):
            return forest
        return None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Same as ``booster.inplace_predict(x)``."""
        forest = self.forest_for(x)
        return forest.predict(x) if forest is not None else self.booster.inplace_predict(x)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Same as ``booster.predict(xgb.DMatrix(x, missing=np.nan, nthread=1), pred_contribs=True)``."""
        self.prepare_contributions()
        if self._shap is not None and x.ndim == 2 and x.shape[0] > 0:
            return self._shap.contributions(x)
        return self.booster.predict(xgb.DMatrix(x, missing=np.nan, nthread=1), pred_contribs=True)


def read_bundle(
    path: Path, check_feature_set: bool = True
) -> tuple[str, dict[str, Any], Encoder, dict[str, xgb.Booster]]:
    """A bundle directory's parts, as :meth:`Bundle.save` wrote them: ``(kind, meta, encoder, boosters)``.

    ``features.kinds.open_bundle`` builds the kind's bundle from them.

    Raises:
        FeatureSetMismatch: the bundle's feature-set version differs from the code's.
    """
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    if check_feature_set and meta["feature_set_version"] != feature_set_version():
        raise FeatureSetMismatch(
            f"model at {path} was trained on feature set {meta['feature_set_version']}, "
            f"but this code computes {feature_set_version()}: retrain or deploy the matching code"
        )
    kind = meta.pop("kind")
    boosters = {name: _booster(path / file) for name, file in meta.pop("boosters").items()}
    encoder = Encoder.from_json(meta.pop("encoder"))
    return kind, meta, encoder, boosters


def _booster(path: Path) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(str(path))
    # One thread per prediction: the service parallelises across requests, not inside one row.
    booster.set_param({"nthread": 1})
    return booster


@dataclass
class Bundle:
    """A loaded model bundle of one kind: each kind's subclass (``features.kinds.open_bundle`` reads one).

    Each kind's subclass (:mod:`features.kinds`) adds its scoring methods and its typed metadata.

    Attributes:
        kind: Which model this is (a name in :data:`features.kinds.KINDS`).
        meta: The bundle's metadata, typed by the kind (a mapping given here is validated into it).
        encoder: Input encoding.
        boosters: Named boosters (``main``, plus what the kind keeps beside it).
    """

    kind: str
    meta: BundleMeta
    encoder: Encoder
    boosters: dict[str, xgb.Booster]
    _predictors: dict[str, Predictor] = field(default_factory=dict, init=False, repr=False, compare=False)
    _stacks: dict[tuple[str, ...], ForestStack] = field(default_factory=dict, init=False, repr=False, compare=False)
    #: The metadata model of the kind (set by each subclass).
    meta_type: ClassVar[type[BundleMeta]]

    def __post_init__(self) -> None:
        if not isinstance(self.meta, self.meta_type):
            data = self.meta.model_dump() if isinstance(self.meta, BaseModel) else dict(self.meta)
            self.meta = self.meta_type.model_validate(data)

    def save(self, path: Path) -> Path:
        """Write the bundle to ``path`` (created) and return it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = {}
        for name, booster in self.boosters.items():
            files[name] = f"{name}.ubj"
            booster.save_model(str(path / files[name]))
        meta = {
            "feature_set_version": feature_set_version(),
            **self.meta.to_json(),
            "kind": self.kind,
            "boosters": files,
            "encoder": self.encoder.to_json(),
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=float))
        return path

    def _predictor(self, name: str) -> Predictor:
        booster = self.boosters[name]
        predictor = self._predictors.get(name)
        if predictor is None or predictor.booster is not booster:
            predictor = self._predictors[name] = Predictor(booster)
        return predictor

    def prepare_online(self) -> None:
        """Build what online scoring needs ahead of the first request (numpy forests; the kind may add more)."""
        for name in self.boosters:
            self._predictor(name).prepare_small_batches()

    def predict_many(self, names: Sequence[str], x: np.ndarray) -> list[np.ndarray]:
        """``boosters[name].inplace_predict(x)`` for each name, small batches in one walk of all their trees."""
        predictors = [self._predictor(name) for name in names]
        forests = [p.forest_for(x) for p in predictors]
        if len(forests) < 2 or any(f is None for f in forests):
            return [p.predict(x) for p in predictors]
        key = tuple(names)
        stack = self._stacks.get(key)
        if stack is None or any(a is not b for a, b in zip(stack.parts, forests, strict=True)):
            stack = self._stacks[key] = ForestStack.of(forests)  # type: ignore[arg-type]
        return stack.predict_each(x)

    # --- reasons (SHAP, for the kinds that explain their answer) -----------------------------------------------
    def reasons(self, x: np.ndarray, booster: str = "main", top: int = TOP_REASONS) -> list[list[Reason]]:
        """Per row, the ``top`` features pushing the score up most, then the ``top`` holding it down most.

        SHAP contributions of ``booster`` (in its margin: log-odds for churn, log-spend for CLTV); each reason has
        ``direction`` ``up`` or ``down``, the feature's description and its value as the user knows it.
        """
        contribs = self._predictor(booster).contributions(x)[:, :-1]
        out = []
        for i in range(x.shape[0]):
            row = contribs[i]
            ups = [j for j in np.argsort(-row, kind="stable")[:top] if row[j] > 0]
            downs = [j for j in np.argsort(row, kind="stable")[:top] if row[j] < 0]
            out.append(
                [self._reason(j, float(x[i, j]), float(row[j]), "up") for j in ups]
                + [self._reason(j, float(x[i, j]), float(row[j]), "down") for j in downs]
            )
        return out

    def _reason(self, j: int, value: float, contribution: float | None, direction: Any) -> Reason:
        col = self.encoder.columns[j]
        return {
            "feature": col,
            "description": describe(col),
            "value": self.encoder.label(col, value),
            "contribution": contribution,
            "direction": direction,
        }

    def cancelled(self, x: np.ndarray) -> np.ndarray:
        """Whether each encoded row is a customer cancelled before T (CONTRACT §2: already churned)."""
        j = self.encoder._index.get(CANCELLED_FEATURE)
        if j is None:
            return np.zeros(x.shape[0], dtype=bool)
        return x[:, j] >= 0.5  # a missing flag (NaN) compares False: not cancelled
