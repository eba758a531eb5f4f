"""The model kinds, listed once: every other list of models (serving, training, experiments, the CLI) derives from it.

Each kind's module holds its scoring side (:class:`features.kinds.base.ModelKind`); :mod:`training.kinds` holds
its training side. :data:`KINDS` is in answer order: churn first, because the CLTV answer reuses its probabilities.
"""

from __future__ import annotations

from features.kinds.base import ModelKind, ScoreContext
from features.kinds.churn import CHURN
from features.kinds.cltv import CLTV
from features.kinds.next_best_offer import NEXT_BEST_OFFER

__all__ = ["CHURN", "CLTV", "KINDS", "KIND_NAMES", "NEXT_BEST_OFFER", "ModelKind", "ScoreContext", "kind_of"]

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
