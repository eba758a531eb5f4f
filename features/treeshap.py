"""XGBoost's exact SHAP contributions for shallow trees, from tables built once per model.

XGBoost's ``pred_contribs`` runs path-dependent TreeSHAP (Lundberg et al., 2020) for every row and tree:
O(leaves x depth^2) work per tree and row, the largest cost of an online answer. For one leaf,
though, the algorithm's answer depends on the row only through which of the leaf's path conditions the row meets
(one bit per distinct feature on the path). With depth <= :data:`MAX_DEPTH` there are at most ``2**depth``
such patterns, so every leaf's contribution to every one of its path features can be tabulated ahead of time
("Fast TreeSHAP v2", Yang 2021). Scoring a row is then: evaluate each leaf's path conditions, form its pattern,
look the contributions up and add them per feature.

The numbers are XGBoost's own up to float rounding (tests compare with ``pred_contribs``): leaf values, split
thresholds, default directions and covers are read from the booster's JSON, and the constant last column
(expected value plus base margin) is taken from XGBoost itself. Models this does not cover (categorical splits,
DART, several outputs, deeper trees) return None from :meth:`PathShap.from_booster`; callers then keep XGBoost.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from features.forest import plain_trees

#: Deepest tree tabulated: a leaf's table has ``2**depth x depth`` entries.
MAX_DEPTH = 6
#: Rows scored in one vectorised pass: larger blocks outgrow the cache and pay fresh page faults on their
#: temporaries (measure with benchmarks/serving_profile.py before changing it).
ROW_BLOCK = 8


@dataclass(frozen=True)
class PathShap:
    """Per-leaf SHAP tables of one booster.

    Attributes:
        n_features: Input columns; :meth:`contributions` returns one more (the bias).
        bias: The constant last column of XGBoost's ``pred_contribs``.
        split_feature: ``(depth, leaves)`` feature of each leaf's k-th path split (padding: 0).
        split_threshold: ``(depth, leaves)`` its threshold (``x < t`` goes left, as in XGBoost).
        split_right: ``(depth, leaves)`` whether the path to the leaf goes right there (padding: True).
        split_default_right: ``(depth, leaves)`` whether a missing value goes right there (padding: True).
        split_bit: ``(depth, leaves)`` the bit of the split's feature in the leaf's pattern (padding: 0).
        full: ``(leaves,)`` the pattern of a row that meets every condition of the leaf's path.
        offset: ``(leaves,)`` first row of each leaf's block in ``table``.
        table: ``(leaves * 2**depth, depth)`` contribution to each distinct path feature, by leaf and pattern.
        columns: ``(leaves * depth,)`` the feature of each table entry, leaf by leaf (padding: ``n_features``,
            dropped).
    """

    n_features: int
    bias: float
    split_feature: np.ndarray
    split_threshold: np.ndarray
    split_right: np.ndarray
    split_default_right: np.ndarray
    split_bit: np.ndarray
    full: np.ndarray
    offset: np.ndarray
    table: np.ndarray
    columns: np.ndarray

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> PathShap | None:
        """Tables for ``booster``, or None when it is not a plain single-output tree model of depth <= MAX_DEPTH."""
        model = json.loads(booster.save_raw("json"))
        trees = plain_trees(model)
        if trees is None:
            return None
        params = model["learner"]["learner_model_param"]
        n_features = int(params["num_feature"])
        leaves = _leaves(trees)
        depth = max(len(path) for _, path in leaves)
        if depth > MAX_DEPTH:
            return None
        n = len(leaves)
        shape = (depth, n)
        feature = np.zeros(shape, np.intp)
        threshold = np.zeros(shape, np.float32)
        # Padding (paths shorter than the depth) has bit 0 and so never marks a condition as failed.
        right = np.ones(shape, bool)
        default_right = np.ones(shape, bool)
        bit = np.zeros(shape, np.uint8)
        slot_feature = np.full((n, depth), n_features, np.intp)
        zero = np.ones((n, depth))
        n_slots = np.zeros(n, np.intp)
        value = np.zeros(n)
        for i, (leaf_value, path) in enumerate(leaves):
            value[i] = leaf_value
            slots: dict[int, int] = {}
            for k, (f, t, goes_left, dleft, zero_fraction) in enumerate(path):
                # A feature split twice on the path is one player: it meets the path if it meets both conditions.
                s = slots.setdefault(f, len(slots))
                feature[k, i], threshold[k, i], right[k, i], default_right[k, i], bit[k, i] = (
                    f,
                    t,
                    not goes_left,
                    not dleft,
                    1 << s,
                )
                slot_feature[i, s] = f
                zero[i, s] *= zero_fraction
            n_slots[i] = len(slots)
        table = _tables(value, zero, n_slots, depth)
        # XGBoost's bias column does not depend on the row: read it once from XGBoost itself.
        probe = xgb.DMatrix(np.full((1, n_features), np.nan, np.float32), missing=np.nan, nthread=1)
        bias = float(booster.predict(probe, pred_contribs=True)[0, -1])
        return cls(
            n_features=n_features,
            bias=bias,
            split_feature=feature,
            split_threshold=threshold,
            split_right=right,
            split_default_right=default_right,
            split_bit=bit,
            full=((1 << n_slots) - 1).astype(np.uint8),
            offset=np.arange(n, dtype=np.intp) << depth,
            table=table.reshape(n << depth, depth).astype(np.float32),
            columns=slot_feature.ravel(),
        )

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """SHAP contributions of each row, as ``booster.predict(DMatrix(x), pred_contribs=True)`` (NaN = missing).

        Args:
            x: ``(rows, n_features)`` float32 matrix.

        Returns:
            ``(rows, n_features + 1)`` float32: one column per feature, then the bias.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a (rows, {self.n_features}) matrix, got shape {x.shape}")
        out = np.empty((x.shape[0], self.n_features + 1), np.float32)
        for start in range(0, x.shape[0], ROW_BLOCK):
            block = x[start : start + ROW_BLOCK]
            out[start : start + ROW_BLOCK, :-1] = self._block(block)
        out[:, -1] = self.bias
        return out

    def _block(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        depth, leaves = self.split_feature.shape
        # Every path condition of every leaf at once, for every row: (x < t goes left; NaN >= t is False, so a
        # missing value goes by its default), then one bit per distinct feature whose condition the row fails.
        v = np.take(x, self.split_feature.ravel(), axis=1)
        right = (v >= self.split_threshold.ravel()) | (np.isnan(v) & self.split_default_right.ravel())
        failed = (right != self.split_right.ravel()).reshape(n, depth, leaves) * self.split_bit
        pattern = self.full & ~np.bitwise_or.reduce(failed.astype(np.uint8, copy=False), axis=1)
        rows = np.take(self.table, self.offset + pattern, axis=0)
        width = self.n_features + 1
        columns = (self.columns + (np.arange(n) * width)[:, None]).ravel()
        sums = np.bincount(columns, weights=rows.ravel(), minlength=n * width)
        return sums.reshape(n, width)[:, :-1]


def _leaves(trees: list[dict]) -> list[tuple[float, list[tuple[int, np.float32, bool, bool, float]]]]:
    """Every leaf of every tree: its value and its path (feature, threshold, goes left, default left, zero fraction)."""
    leaves = []
    for tree in trees:
        lefts, rights = tree["left_children"], tree["right_children"]
        features, conditions = tree["split_indices"], tree["split_conditions"]
        default_left, cover = tree["default_left"], tree["sum_hessian"]
        stack: list[tuple[int, list]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            if lefts[node] == -1:
                # A leaf's "split condition" is its value (already scaled by the learning rate).
                leaves.append((float(conditions[node]), path))
                continue
            for child, goes_left in ((lefts[node], True), (rights[node], False)):
                # Zero fraction: the share of training cover that follows this branch (TreeSHAP's expectation).
                step = (features[node], np.float32(conditions[node]), goes_left, bool(default_left[node]))
                stack.append((child, [*path, (*step, cover[child] / cover[node])]))
    return leaves


def _tables(value: np.ndarray, zero: np.ndarray, n_slots: np.ndarray, depth: int) -> np.ndarray:
    """``(leaves, 2**depth, depth)``: each leaf's contribution to each path feature, for each pattern of met conditions.

    For a leaf with value v and distinct path features 1..d, feature k's share when the row meets exactly the
    conditions in A is ``v (o_k - z_k) sum over S in A-{k} of |S|!(d-|S|-1)!/d! prod over j not in S, j != k of z_j``,
    with ``o_k`` = 1 if k is in A and ``z_j`` the zero fractions: the Shapley value of the leaf's term in the
    path-dependent game TreeSHAP evaluates.
    """
    out = np.zeros((len(value), 1 << depth, depth))
    for d in range(1, depth + 1):
        rows = np.flatnonzero(n_slots == d)
        if not len(rows):
            continue
        z, v = zero[rows, :d], value[rows]
        weight = [math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) for s in range(d)]
        for k in range(d):
            others = [j for j in range(d) if j != k]
            # sum_S weight(|S|) prod_{j in others - S} z_j, for every subset S of the others (whatever A is).
            terms = {}
            for size in range(d):
                for subset in itertools.combinations(others, size):
                    rest = [j for j in others if j not in subset]
                    terms[subset] = weight[size] * np.prod(z[:, rest], axis=1)
            for pattern in range(1 << d):
                met = [j for j in others if pattern >> j & 1]
                total = sum(terms[s] for size in range(len(met) + 1) for s in itertools.combinations(met, size))
                out[rows, pattern, k] = v * ((pattern >> k & 1) - z[:, k]) * total
    return out
