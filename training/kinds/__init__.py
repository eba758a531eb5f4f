"""Training's side of each model kind (:mod:`features.kinds`), one trainer per kind, in the kinds' order."""

from __future__ import annotations

from features.kinds import KIND_NAMES
from training.kinds.base import Job, ModelResult, Trainer, TrainingDataError
from training.kinds.churn import ChurnTrainer
from training.kinds.cltv import CltvTrainer
from training.kinds.next_best_offer import OfferTrainer

__all__ = ["TRAINERS", "Job", "ModelResult", "Trainer", "TrainingDataError"]

#: The trainer of every kind, by kind name, in :data:`features.kinds.KINDS` order (churn and CLTV share snapshots).
TRAINERS: dict[str, Trainer] = {t.kind.name: t for t in (ChurnTrainer(), CltvTrainer(), OfferTrainer())}
assert tuple(TRAINERS) == KIND_NAMES, "every model kind needs its trainer, in the kinds' order"
