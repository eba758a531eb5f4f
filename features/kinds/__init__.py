"""The model kinds, listed once: every other list of models (serving, training, experiments, the CLI) derives from it.

Each kind's module holds its scoring side (:class:`features.kinds.base.ModelKind`); :mod:`training.kinds` holds
its training side. :data:`KINDS` is in answer order: churn first, because the CLTV answer reuses its probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from features.kinds.base import BundleMeta, ModelKind, ScoreContext
from features.kinds.churn import CHURN
from features.kinds.cltv import CLTV
from features.kinds.next_best_offer import NEXT_BEST_OFFER
from features.scoring import Bundle, Encoder, read_bundle

__all__ = [
    "CHURN",
    "CLTV",
    "KINDS",
    "KIND_NAMES",
    "NEXT_BEST_OFFER",
    "ModelKind",
    "ScoreContext",
    "kind_of",
    "open_bundle",
    "new_bundle",
    "score_frame",
]

#: Every model kind by name, in answer order.
KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (CHURN, CLTV, NEXT_BEST_OFFER)}
#: Their names, in the same order.
KIND_NAMES: tuple[str, ...] = tuple(KINDS)


def kind_of(name: str) -> ModelKind:
    """The kind called ``name``.

    Raises:
        KeyError: no such kind (the message lists the known ones).
    """
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown model kind {name!r}; one of {', '.join(KINDS)}") from None


def new_bundle(
    kind: str,
    meta: BundleMeta | Mapping[str, Any],
    encoder: Encoder,
    boosters: dict[str, xgb.Booster],
) -> Bundle:
    """A bundle of the kind called ``kind`` (its own :class:`features.scoring.Bundle` subclass).

    Raises:
        KeyError: no such kind.
    """
    return kind_of(kind).bundle_type(kind=kind, meta=meta, encoder=encoder, boosters=boosters)  # type: ignore[arg-type]


def open_bundle(path: Path, check_feature_set: bool = True) -> Bundle:
    """Load a bundle directory (:meth:`features.scoring.Bundle.save`) as its kind's bundle.

    Raises:
        features.scoring.FeatureSetMismatch: the bundle's feature-set version differs from the code's.
        KeyError: the bundle names no kind this code knows.
    """
    return new_bundle(*read_bundle(path, check_feature_set))


def score_frame(
    bundle: Bundle,
    frame: Any,
    churn_probability: np.ndarray | None = None,
    known: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """Batch-score a pandas feature frame with one bundle; returns a frame aligned with ``frame``.

    The columns are the kind's (:attr:`features.kinds.base.ModelKind.columns`): ``churn_probability`` and
    ``churn_risk_band`` (churn); ``predicted_spend``, ``cltv``, ``historic_value``, ``p_alive``,
    ``expected_orders`` and ``cltv_activity_method`` (cltv); ``next_best_offer`` and ``next_best_offer_value``
    (next best offer).

    Args:
        bundle: The model.
        frame: Feature rows.
        churn_probability: The churn model's answer for the rows (the CLTV fallback reads it).
        known: Columns other kinds produced for the same rows (``churn_probability`` among them).
    """
    import pandas as pd

    columns = dict(known or {})
    if churn_probability is not None:
        columns["churn_probability"] = churn_probability
    x = bundle.encoder.encode_frame(frame)
    return pd.DataFrame(kind_of(bundle.kind).frame(bundle, x, frame, columns), index=frame.index)
