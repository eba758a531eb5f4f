"""XGBoost's predictions for a few rows, bit for bit, from a numpy walk of the trees.

XGBoost's in-place prediction carries a fixed cost per call (it builds a proxy matrix, parses its arguments and
prepares per-thread buffers every time) that dwarfs the tree walk for one row, and an online request makes three
such calls on one to a few rows. Here the trees are flat numpy arrays, and a few rows are walked level by level:
all of one row's split decisions in one vectorised comparison, then ``depth`` lookups over all trees at once.
From a handful of rows XGBoost is faster, so the service uses the forest for small matrices only
(``benchmarks/serving_profile.py`` measures both; figures in docs/benchmarks.md).

The numbers are XGBoost's own, not merely close: leaf values are added in float32 in XGBoost's order (base
margin, then tree 0, 1, ...), and the objective's transform is computed in float32 with the C library's
``expf``, as XGBoost does. :meth:`Forest.from_booster` checks this on probe rows that cross every split
threshold (and take every default branch) and returns None when any prediction differs in any bit, and for models
it does not cover (categorical splits, several outputs, DART, linear boosters, objectives without a known
transform); callers then keep XGBoost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

#: Probe rows compared with XGBoost before a forest is used.
PROBE_ROWS = 512

_F32 = np.float32


@functools.cache
def _libm_expf() -> Callable[[float], float] | None:
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        expf = ctypes.CDLL(name).expf
    except (OSError, AttributeError):
        return None
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return expf


def _exp32(margin: np.ndarray, expf: Callable[[float], float]) -> np.ndarray:
    # numpy's float32 exp differs from the C library's in the last bit for about one value in six.
    return np.fromiter((expf(v) for v in margin.tolist()), dtype=_F32, count=margin.size).reshape(margin.shape)


def _sigmoid(margin: np.ndarray, expf: Callable[[float], float]) -> np.ndarray:
    return _F32(1.0) / (_F32(1.0) + _exp32(-margin, expf))


#: Objectives by the transform XGBoost applies to their margin: sigmoid, exp, none.
_LOGISTIC = ("binary:logistic", "reg:logistic")
_LOG_LINK = ("reg:tweedie", "reg:gamma", "count:poisson")
_IDENTITY = ("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:squaredlogerror", "binary:logitraw")


def _base_margins(objective: str, base: np.float32) -> list[np.float32]:
    """Candidate float32 base margins for ``base_score`` (XGBoost's own rounding is picked by the probe check).

    The link computed two ways, then each one's float32 neighbours: XGBoost's own float32 arithmetic can land one
    unit in the last place away from both (seen on a logistic booster with ``base_score`` 0.53793883).
    """
    exact = _link_candidates(objective, base)
    near = [np.nextafter(c, _F32(s * np.inf)) for c in exact for s in (-1, 1)]
    return list(dict.fromkeys([*exact, *near]))


def _link_candidates(objective: str, base: np.float32) -> list[np.float32]:
    if objective in _LOGISTIC:
        if not 0.0 < base < 1.0:
            return []
        return [_F32(-np.log(_F32(1.0) / base - _F32(1.0))), _F32(-math.log(1.0 / float(base) - 1.0))]
    if objective in _LOG_LINK:
        return [_F32(np.log(base)), _F32(math.log(float(base)))] if base > 0 else []
    if objective in _IDENTITY:
        return [base]
    return []


def plain_trees(model: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The trees of a booster's JSON model, or None unless it is a single-output ``gbtree`` with numeric splits.

    The models both :class:`Forest` and :class:`features.treeshap.PathShap` can read: DART (tree weights),
    several classes or targets, categorical splits and boosters with no trees are left to XGBoost.
    """
    learner = model["learner"]
    params = learner["learner_model_param"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") != "gbtree" or int(params.get("num_target", "1")) > 1:
        return None
    if int(params.get("num_class", "0")) > 1:
        return None
    trees = gbm["model"]["trees"]
    if not trees or any(any(t["split_type"]) for t in trees):
        return None
    return trees


@dataclass(frozen=True)
class Forest:
    """One single-output tree booster as flat arrays.

    Attributes:
        n_features: Input columns.
        depth: Deepest leaf (levels walked per row).
        roots: ``(trees,)`` node index of each tree's root.
        feature: ``(nodes,)`` split feature of each node (0 for leaves).
        threshold: ``(nodes,)`` float32 split threshold (``x < t`` goes left, as in XGBoost).
        default_right: ``(nodes,)`` whether a missing value goes right.
        child: ``(2 * nodes,)`` the left child of every node, then the right child of every node (``child[n]`` and
            ``child[nodes + n]``); a leaf is its own child.
        value: ``(nodes,)`` float32 leaf value (0 for inner nodes).
        base_margin: The float32 margin every row starts from.
        transform: ``"identity"``, ``"sigmoid"`` or ``"exp"``: what turns the margin into a prediction.
    """

    n_features: int
    depth: int
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_right: np.ndarray
    child: np.ndarray
    value: np.ndarray
    base_margin: np.float32
    transform: str

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> Forest | None:
        """The forest of ``booster``, or None when it is not covered or does not reproduce XGBoost exactly."""
        model = json.loads(booster.save_raw("json"))
        trees = plain_trees(model)
        if trees is None or _libm_expf() is None:
            return None
        params = model["learner"]["learner_model_param"]
        objective = model["learner"]["objective"]["name"]
        transform = "sigmoid" if objective in _LOGISTIC else "exp" if objective in _LOG_LINK else "identity"
        candidates = _base_margins(objective, _F32(float(str(params["base_score"]).strip("[]"))))
        arrays = _flatten(trees)
        probe = _probe_rows(arrays, int(params["num_feature"]))
        expected = booster.inplace_predict(probe)
        for base_margin in candidates:
            forest = cls(n_features=int(params["num_feature"]), **arrays, base_margin=base_margin, transform=transform)
            if np.array_equal(forest.predict(probe), expected, equal_nan=True):
                return forest
        return None

    def margins(self, x: np.ndarray) -> np.ndarray:
        """Raw margins of each row (``predict_type="margin"``)."""
        return self._margins(self.leaf_values(x))

    def _margins(self, leaves: np.ndarray) -> np.ndarray:
        # Sequential float32 additions, base first then tree by tree: XGBoost's rounding exactly. The base goes
        # into the first tree's column (base + leaf 0 is the sum's first step either way), sparing a concatenation.
        if leaves.shape[1] == 0:
            return np.full(leaves.shape[0], self.base_margin, _F32)
        acc = np.array(leaves, dtype=_F32)  # a copy: the caller's leaf values stay as they are
        acc[:, 0] += self.base_margin
        return np.cumsum(acc, axis=1, dtype=_F32)[:, -1]

    def leaf_values(self, x: np.ndarray) -> np.ndarray:
        """``(rows, trees)`` float32: the value of the leaf each row reaches in each tree."""
        x = np.asarray(x, dtype=_F32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a (rows, {self.n_features}) matrix, got shape {x.shape}")
        n_nodes = self.feature.shape[0]
        v = x.take(self.feature, axis=1)
        # Every split decision of every row at once (NaN >= t is False: a missing value goes by its default), as
        # the step from a node's index to its child's in ``child``: 0 (left) or ``n_nodes`` (right); int32 halves
        # the memory written for the whole forest, and the walk's index arithmetic takes it as it is.
        jump = ((v >= self.threshold) | (np.isnan(v) & self.default_right)).ravel() * np.int32(n_nodes)
        # The walk is a few array operations per level, whatever the number of trees: their count is what a
        # prediction of one row costs (ndarray methods rather than np.take: no Python dispatch layer per call).
        if x.shape[0] == 1:
            node = self.roots
            for _ in range(self.depth):
                node = self.child.take(node + jump.take(node))
            return self.value.take(node)[None, :]
        offset = (np.arange(x.shape[0]) * n_nodes)[:, None]
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.shape[0]))
        for _ in range(self.depth):
            node = self.child.take(node + jump.take(offset + node))
        return self.value.take(node)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Same as ``booster.inplace_predict(x)`` (float32, NaN = missing)."""
        return self.predict_leaves(self.leaf_values(x))

    def predict_leaves(self, leaves: np.ndarray) -> np.ndarray:
        """The predictions of rows whose ``(rows, trees)`` leaf values :meth:`leaf_values` gave."""
        margin = self._margins(leaves)
        if self.transform == "identity":
            return margin
        expf = _libm_expf()
        if expf is None:  # from_booster builds no such forest without it
            raise RuntimeError("the C library's expf is not available: predict with XGBoost instead")
        return _sigmoid(margin, expf) if self.transform == "sigmoid" else _exp32(margin, expf)


@dataclass(frozen=True)
class ForestStack:
    """Several forests over the same columns, walked as one: one level walk for all their trees.

    A walk costs a few array operations per level whatever the number of trees, so a model made of several boosters
    (an X-learner has two per offer and one for the control) pays that cost once instead of once per booster. Each
    forest's predictions are then finished from its own slice of the leaf values: the same numbers in every bit.

    Attributes:
        walk: The trees of every forest, one after another (its base margin and transform are not used).
        parts: The forests, in the order :meth:`predict_each` answers.
        bounds: Where each forest's trees start in ``walk``, then the end.
    """

    walk: Forest
    parts: tuple[Forest, ...]
    bounds: tuple[int, ...]

    @classmethod
    def of(cls, forests: Sequence[Forest]) -> ForestStack:
        """The stack of ``forests`` (all over the same number of columns)."""
        if not forests or len({f.n_features for f in forests}) != 1:
            raise ValueError("a stack needs at least one forest, all over the same columns")
        sizes = [f.feature.shape[0] for f in forests]
        offsets = np.cumsum([0, *sizes[:-1]])
        left = [f.child[:n] + off for f, n, off in zip(forests, sizes, offsets, strict=True)]
        right = [f.child[n:] + off for f, n, off in zip(forests, sizes, offsets, strict=True)]
        walk = Forest(
            n_features=forests[0].n_features,
            depth=max(f.depth for f in forests),  # a leaf is its own child: shallower trees stay on their leaves
            roots=np.concatenate([f.roots + off for f, off in zip(forests, offsets, strict=True)]),
            feature=np.concatenate([f.feature for f in forests]),
            threshold=np.concatenate([f.threshold for f in forests]),
            default_right=np.concatenate([f.default_right for f in forests]),
            child=np.concatenate(left + right),
            value=np.concatenate([f.value for f in forests]),
            base_margin=_F32(0.0),
            transform="identity",
        )
        bounds = tuple(int(b) for b in np.cumsum([0, *(f.roots.shape[0] for f in forests)]))
        return cls(walk=walk, parts=tuple(forests), bounds=bounds)

    def predict_each(self, x: np.ndarray) -> list[np.ndarray]:
        """Each forest's ``predict(x)``, in order."""
        leaves = self.walk.leaf_values(x)
        return [
            part.predict_leaves(leaves[:, start:end])
            for part, start, end in zip(self.parts, self.bounds[:-1], self.bounds[1:], strict=True)
        ]


def _flatten(trees: list[dict]) -> dict[str, Any]:
    feature, threshold, default_right, left_child, right_child, value, roots = [], [], [], [], [], [], []
    offset = depth = 0
    for tree in trees:
        left = np.asarray(tree["left_children"], np.intp)
        right = np.asarray(tree["right_children"], np.intp)
        n = left.shape[0]
        leaf = left == -1
        index = np.arange(n)
        roots.append(offset)
        conditions = np.asarray(tree["split_conditions"], np.float64).astype(_F32)
        feature.append(np.where(leaf, 0, np.asarray(tree["split_indices"], np.intp)))
        threshold.append(np.where(leaf, _F32(0.0), conditions))
        default_right.append(~np.asarray(tree["default_left"], bool))
        left_child.append(np.where(leaf, index, left) + offset)
        right_child.append(np.where(leaf, index, right) + offset)
        # A leaf's "split condition" is its value (already scaled by the learning rate).
        value.append(np.where(leaf, conditions, _F32(0.0)))
        levels = np.zeros(n, np.intp)
        for node in range(n):  # parents come before their children in XGBoost's node order
            if not leaf[node]:
                levels[left[node]] = levels[right[node]] = levels[node] + 1
        depth = max(depth, int(levels.max()))
        offset += n
    return {
        "depth": depth,
        "roots": np.asarray(roots, np.intp),
        "feature": np.concatenate(feature).astype(np.intp),
        "threshold": np.concatenate(threshold).astype(_F32),
        "default_right": np.concatenate(default_right),
        "child": np.concatenate(left_child + right_child).astype(np.intp),
        "value": np.concatenate(value).astype(_F32),
    }


def _probe_rows(arrays: dict[str, Any], n_features: int) -> np.ndarray:
    """Rows that land on, just below and beside every split threshold, with missing values mixed in."""
    rng = np.random.default_rng(0)
    feature, threshold, child = arrays["feature"], arrays["threshold"], arrays["child"]
    inner = child[: len(feature)] != np.arange(len(feature))
    by_feature: dict[int, np.ndarray] = {}
    for f in range(n_features):
        t = threshold[inner & (feature == f)]
        if t.size:
            by_feature[f] = np.concatenate([t, np.nextafter(t, _F32(-np.inf)), t + np.abs(t) * _F32(1e-3) + _F32(1e-3)])
    rows = rng.normal(0.0, 1.0, (PROBE_ROWS, n_features)).astype(_F32)
    for f, values in by_feature.items():
        rows[:, f] = rng.choice(values, PROBE_ROWS)
    rows[rng.random(rows.shape) < 0.15] = np.nan
    return rows
