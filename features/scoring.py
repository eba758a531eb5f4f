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
from typing import Any

import numpy as np
import xgboost as xgb

from features import btyd
from features.churn_blend import blend_probability
from features.definitions import CANCELLED_FEATURE, describe, feature_names, feature_set_version
from features.eligibility import Rule, compile_rule
from features.forest import Forest
from features.treeshap import PathShap

META_FILE = "bundle.json"
#: Largest matrix (rows) predicted with the numpy forest rather than XGBoost: beyond it the forest's work grows with
#: the rows while XGBoost's cost stays mostly per call (benchmarks/serving_profile.py).
SMALL_BATCH = 4
RISK_BANDS: tuple[tuple[float, str], ...] = ((0.3, "low"), (0.6, "medium"), (1.01, "high"))
#: The band of a customer cancelled before T (CONTRACT §2): answered as already churned, probability 1.0.
CHURNED_BAND = "churned"
#: Strongest factors listed each way (pushing the score up, holding it down).
TOP_REASONS = 3
#: Columns of a feature row the CLTV answer reads besides the model inputs (float64, not the float32 matrix).
CLTV_SUMMARY = ("monetary_total", "avg_order_value", "bg_frequency", "bg_recency_days", "bg_age_days")
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

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Same as ``booster.inplace_predict(x)``."""
        forest = self._forest
        if (
            forest is not None
            and x.dtype == np.float32
            and x.ndim == 2
            and 0 < x.shape[0] <= SMALL_BATCH
            and x.shape[1] == forest.n_features
        ):
            return forest.predict(x)
        return self.booster.inplace_predict(x)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Same as ``booster.predict(xgb.DMatrix(x, missing=np.nan, nthread=1), pred_contribs=True)``."""
        self.prepare_contributions()
        if self._shap is not None and x.ndim == 2 and x.shape[0] > 0:
            return self._shap.contributions(x)
        return self.booster.predict(xgb.DMatrix(x, missing=np.nan, nthread=1), pred_contribs=True)


def _booster(path: Path) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(str(path))
    # One thread per prediction: the service parallelises across requests, not inside one row.
    booster.set_param({"nthread": 1})
    return booster


def risk_band(probability: float, cancelled: bool = False) -> str:
    """``low``/``medium``/``high`` churn risk for a calibrated probability; ``churned`` when cancelled before T."""
    if cancelled:
        return CHURNED_BAND
    return next(name for bound, name in RISK_BANDS if probability < bound)


def summary_columns(rows: Any) -> dict[str, np.ndarray]:
    """The :data:`CLTV_SUMMARY` columns of feature rows (a pandas frame or a sequence of mappings) as float64.

    Missing columns or values are NaN.
    """
    if hasattr(rows, "columns"):
        n = len(rows)
        return {
            c: (rows[c].astype("float64").to_numpy() if c in rows.columns else np.full(n, math.nan))
            for c in CLTV_SUMMARY
        }
    out = {}
    for c in CLTV_SUMMARY:
        values = [row.get(c) for row in rows]
        out[c] = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return out


@dataclass
class Bundle:
    """A loaded model bundle of one kind (``churn``, ``cltv`` or ``next_best_offer``).

    Attributes:
        kind: Which model this is.
        meta: The bundle's JSON metadata.
        encoder: Input encoding.
        boosters: Named boosters (``main``; ``cltv`` for a separate long-horizon model).
    """

    kind: str
    meta: dict[str, Any]
    encoder: Encoder
    boosters: dict[str, xgb.Booster]
    rules: list[Rule] = field(default_factory=list)
    _predictors: dict[str, Predictor] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "next_best_offer" and not self.rules:
            known = set(self.encoder.columns)
            self.rules = [compile_rule(o.get("eligible_if"), known) for o in self.meta["offers"]]

    @classmethod
    def load(cls, path: Path, check_feature_set: bool = True) -> Bundle:
        """Load a bundle directory.

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
        boosters = {name: _booster(path / file) for name, file in meta["boosters"].items()}
        return cls(kind=meta["kind"], meta=meta, encoder=Encoder.from_json(meta["encoder"]), boosters=boosters)

    def save(self, path: Path) -> Path:
        """Write the bundle to ``path`` (created) and return it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        files = {}
        for name, booster in self.boosters.items():
            files[name] = f"{name}.ubj"
            booster.save_model(str(path / files[name]))
        meta = {**self.meta, "kind": self.kind, "boosters": files, "encoder": self.encoder.to_json()}
        meta.setdefault("feature_set_version", feature_set_version())
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=float))
        return path

    def _predictor(self, name: str) -> Predictor:
        booster = self.boosters[name]
        predictor = self._predictors.get(name)
        if predictor is None or predictor.booster is not booster:
            predictor = self._predictors[name] = Predictor(booster)
        return predictor

    def prepare_online(self) -> None:
        """Build what online scoring needs ahead of the first request: SHAP tables (churn) and numpy forests."""
        if self.kind in ("churn", "cltv"):
            self._predictor("main").prepare_contributions()
        for name in self.boosters:
            self._predictor(name).prepare_small_batches()

    # --- reasons (churn and cltv) ------------------------------------------------------------------------
    def reasons(self, x: np.ndarray, booster: str = "main", top: int = TOP_REASONS) -> list[list[dict[str, Any]]]:
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

    def _reason(self, j: int, value: float, contribution: float | None, direction: str) -> dict[str, Any]:
        col = self.encoder.columns[j]
        return {
            "feature": col,
            "description": describe(col),
            "value": self.encoder.label(col, value),
            "contribution": contribution,
            "direction": direction,
        }

    # --- churn -------------------------------------------------------------------------------------------
    def cancelled(self, x: np.ndarray) -> np.ndarray:
        """Whether each encoded row is a customer cancelled before T (CONTRACT §2: already churned)."""
        j = self.encoder._index.get(CANCELLED_FEATURE)
        if j is None:
            return np.zeros(x.shape[0], dtype=bool)
        return np.nan_to_num(x[:, j], nan=0.0) >= 0.5

    def churn_probability(self, x: np.ndarray) -> np.ndarray:
        """Calibrated churn probabilities for encoded rows; exactly 1.0 for a customer cancelled before T."""
        raw = self._predictor("main").predict(x)
        if blend := self.meta.get("blend"):
            p = blend_probability(raw, x, self.encoder.columns, blend)
        else:
            cal = self.meta.get("calibration")
            p = np.asarray(raw, dtype=np.float64) if not cal else np.interp(raw, cal["x"], cal["y"])
        return np.where(self.cancelled(x), 1.0, p)

    def churn_reasons(self, x: np.ndarray, top: int = TOP_REASONS) -> list[list[dict[str, Any]]]:
        """The churn reasons both ways (:meth:`reasons`); a cancelled customer's one reason is the cancellation."""
        out = self.reasons(x, "main", top)
        j = self.encoder._index.get(CANCELLED_FEATURE)
        for i in np.flatnonzero(self.cancelled(x)):
            out[i] = [self._reason(j, 1.0, None, "up")]  # type: ignore[arg-type]
        return out

    # --- cltv --------------------------------------------------------------------------------------------
    def spend(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted spend over the horizon and value over the CLTV horizon for encoded rows."""
        spend = np.maximum(np.asarray(self._predictor("main").predict(x), dtype=np.float64), 0.0)
        # The total-calibration factor fitted in training (meta["spend_scale_note"] says how); 1 in older bundles.
        spend = spend * float(self.meta.get("spend_scale", 1.0))
        if "cltv" in self.boosters:
            value = np.maximum(np.asarray(self._predictor("cltv").predict(x), dtype=np.float64), 0.0)
        else:
            value = spend * float(self.meta["cltv_scale"])
        return spend, value

    def cltv_answers(
        self, x: np.ndarray, summary: Mapping[str, np.ndarray], churn_probability: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """The complete CLTV answer for encoded rows (CONTRACT §2 "cltv").

        ``historic_value`` is the net spend before T; ``p_alive`` and ``expected_orders`` (over the horizon H) come
        from the per-customer BG/NBD (:mod:`features.btyd`, parameters fitted at training) where that fit is usable
        and the customer has bought. Elsewhere (a degenerate fit, e.g. P(alive) = 1 for everyone, or no purchase
        yet) they fall back: ``p_alive`` = 1 - churn probability (NaN without one), ``expected_orders`` = predicted
        spend over the customer's average purchase value (the training population's where they have none).

        Args:
            x: Encoded rows.
            summary: :func:`summary_columns` of the same rows.
            churn_probability: The churn model's answer for the rows, for the fallback.

        Returns:
            Arrays ``predicted_spend``, ``value``, ``historic_value``, ``p_alive``, ``expected_orders`` and
            ``activity_method`` (``bgnbd`` or ``fallback`` per row).
        """
        spend, value = self.spend(x)
        n = x.shape[0]
        horizon = float(self.meta.get("horizon_days", 90))
        bg = self.meta.get("bgnbd")
        alive = np.full(n, math.nan)
        orders = np.full(n, math.nan)
        if bg and not bg.get("degenerate", True):
            alive, orders = btyd.customer_answers(
                btyd.BGParams.from_json(bg),
                horizon,
                summary["bg_frequency"],
                summary["bg_recency_days"],
                summary["bg_age_days"],
            )
        use_bg = np.isfinite(alive) & np.isfinite(orders)
        aov = summary["avg_order_value"]
        aov = np.where(np.isfinite(aov) & (aov > 0), aov, float(self.meta.get("mean_order_value") or math.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            orders = np.where(use_bg, orders, spend / aov)
        if churn_probability is not None:
            alive = np.where(use_bg, alive, 1.0 - np.asarray(churn_probability, dtype=np.float64))
        if self.cancelled(x).any():
            gone = self.cancelled(x)
            spend, value = np.where(gone, 0.0, spend), np.where(gone, 0.0, value)
            alive, orders = np.where(gone, 0.0, alive), np.where(gone, 0.0, orders)
        return {
            "predicted_spend": spend,
            "value": value,
            "historic_value": summary["monetary_total"],
            "p_alive": alive,
            "expected_orders": orders,
            "activity_method": np.where(use_bg, "bgnbd", "fallback"),
        }

    # --- next best offer ---------------------------------------------------------------------------------
    def _offer_outcomes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outcome without an offer ``(n,)`` (NaN without a control arm) and per offer: uplift ``(n, k)``."""
        n_off = len(self.meta["offers"])
        if self.meta.get("layout") == "effect":
            return effect_uplift(self.meta, n_off, x, lambda name, m: self._predictor(name).predict(m))
        k = n_off + 1
        idx = np.tile(np.arange(-1, n_off), x.shape[0])
        pred = self._predictor("main").predict(design_matrix(np.repeat(x, k, axis=0), n_off, idx))
        pred = np.asarray(pred, dtype=np.float64).reshape(x.shape[0], k)
        if not self.meta["has_control"]:
            return np.full(x.shape[0], np.nan), pred[:, 1:]
        return pred[:, 0], pred[:, 1:] - pred[:, :1]

    def offer_scores(self, x: np.ndarray, feature_rows: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        """Every offer ranked by expected incremental value for each customer (ineligible offers excluded).

        Where training found that the per-customer policy does not beat one offer for all (``meta["policy"]``
        is ``best_single``), every customer's ranking uses each offer's average uplift instead: the top eligible
        offer is then the best single offer, here, in batch predict and in training metrics alike.
        """
        offers = self.meta["offers"]
        has_control = bool(self.meta["has_control"])
        base, uplift = self._offer_outcomes(x)
        average = self.meta.get("average_uplift") if self.meta.get("policy") == "best_single" else None
        out = []
        for i, row in enumerate(feature_rows):
            ranked = []
            for j, offer in enumerate(offers):
                if not self.rules[j](row):
                    continue
                u = float(average[offer["offer_id"]]) if average else float(uplift[i, j])
                ev = u * float(offer["value"]) - float(offer["cost"])
                # Without a control arm the "uplift" is the acceptance itself (propensity fallback).
                p_accept = float(base[i] + uplift[i, j]) if has_control else float(uplift[i, j])
                ranked.append(
                    {"offer_id": offer["offer_id"], "expected_value": float(ev), "uplift": u, "p_accept": p_accept}
                )
            ranked.sort(key=lambda r: -r["expected_value"])
            out.append(ranked)
        return out


def effect_uplift(meta: Mapping[str, Any], n_offers: int, x: np.ndarray, predict: Any) -> tuple[np.ndarray, np.ndarray]:
    """Outcome without an offer and uplift per offer from an ``effect`` layout bundle (T-, X- or DR-learner).

    Args:
        meta: Bundle metadata (``learner``: ``t``, ``x`` or ``dr``; ``x_weights`` for the X-learner).
        n_offers: Number of offers.
        x: Encoded rows.
        predict: ``predict(booster_name, matrix)`` returning the booster's predictions.

    Returns:
        ``(control_outcome (n,), uplift (n, n_offers))``.
    """
    base = np.asarray(predict("control", x), dtype=np.float64)
    uplift = np.empty((x.shape[0], n_offers))
    learner = meta["learner"]
    for j in range(n_offers):
        if learner == "t":
            uplift[:, j] = np.asarray(predict(f"arm{j}", x), dtype=np.float64) - base
        elif learner == "x":
            g = float(meta["x_weights"][j])
            tau_c = np.asarray(predict(f"tau{j}_c", x), dtype=np.float64)
            tau_t = np.asarray(predict(f"tau{j}_t", x), dtype=np.float64)
            uplift[:, j] = g * tau_c + (1.0 - g) * tau_t
        else:
            uplift[:, j] = np.asarray(predict(f"tau{j}", x), dtype=np.float64)
    return base, uplift


NO_OFFER_PAYS = "no eligible offer is expected to earn more than it costs: showing none is worth more"


def best_offer(ranked: Sequence[Mapping[str, Any]], has_control: bool) -> Mapping[str, Any] | None:
    """The offer to show from a ranking (:meth:`Bundle.offer_scores`), or None when showing none is worth more.

    With a control arm, expected values are incremental over showing nothing, so an offer whose expected value is
    not above 0 loses money against no contact (the policy that training evaluates, too). Without one (the
    propensity fallback) they are not incremental, and the top eligible offer is shown.

    Args:
        ranked: One customer's eligible offers, best first.
        has_control: Whether the model learned from a control arm (``bundle.meta["has_control"]``).

    Returns:
        The top entry of ``ranked``, or None (nothing eligible, or nothing that pays).
    """
    if not ranked or (has_control and ranked[0]["expected_value"] <= 0):
        return None
    return ranked[0]


def score_frame(bundle: Bundle, frame: Any, churn_probability: np.ndarray | None = None) -> Any:
    """Batch-score a pandas feature frame with one bundle; returns a frame aligned with ``frame``.

    Columns: ``churn_probability`` (churn); ``predicted_spend``, ``cltv``, ``historic_value``, ``p_alive``,
    ``expected_orders`` and ``cltv_activity_method`` (cltv, see :meth:`Bundle.cltv_answers`; ``churn_probability``
    feeds its fallback); ``next_best_offer`` and
    ``next_best_offer_value`` (next_best_offer, see :func:`best_offer`: ``None`` and 0.0 when no eligible offer
    pays, ``None`` and NaN when none is eligible).
    """
    import pandas as pd

    x = bundle.encoder.encode_frame(frame)
    if bundle.kind == "churn":
        return pd.DataFrame({"churn_probability": bundle.churn_probability(x)}, index=frame.index)
    if bundle.kind == "cltv":
        ans = bundle.cltv_answers(x, summary_columns(frame), churn_probability)
        return pd.DataFrame(
            {
                "predicted_spend": ans["predicted_spend"],
                "cltv": ans["value"],
                "historic_value": ans["historic_value"],
                "p_alive": ans["p_alive"],
                "expected_orders": ans["expected_orders"],
                "cltv_activity_method": ans["activity_method"],
            },
            index=frame.index,
        )
    rows = frame.to_dict("records")
    ranked = bundle.offer_scores(x, rows)
    best = [best_offer(r, bool(bundle.meta["has_control"])) for r in ranked]
    return pd.DataFrame(
        {
            "next_best_offer": [b["offer_id"] if b else None for b in best],
            # Showing none is worth 0 over showing none; with nothing eligible there is no value at all.
            "next_best_offer_value": [
                b["expected_value"] if b else (0.0 if r else float("nan")) for b, r in zip(best, ranked, strict=True)
            ],
        },
        index=frame.index,
    )
