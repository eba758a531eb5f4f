"""Routing: which experiment arm (or the champions) answers a customer, and with which traffic share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from serving.experiments import HOLDOUT, assign
from serving.generations import LiveExperiment, Models
from serving.schemas import ExperimentInfo


@dataclass(frozen=True)
class Route:
    """Where one request goes: no experiment, or an experiment's arm and the share it was drawn with."""

    experiment: LiveExperiment | None
    arm: str | None
    share: float

    @property
    def key(self) -> tuple[str | None, str | None]:
        """The (experiment, arm) the route's requests are scored together under."""
        return (self.experiment.name if self.experiment else None, self.arm)

    @property
    def holdout(self) -> bool:
        """Whether the customer is in the experiment's holdout (no offer)."""
        return self.arm == HOLDOUT

    def models(self, champions: Models) -> Models:
        """The model set that answers: the arm's, or the champions outside an experiment."""
        if self.experiment is None or self.arm is None:
            return champions
        return self.experiment.arm_models.get(self.arm, champions)

    def info(self) -> ExperimentInfo | None:
        """What the answer says of its experiment (None outside one)."""
        if self.experiment is None:
            return None
        return ExperimentInfo(name=self.experiment.name, variant=str(self.arm), holdout=self.holdout)


def route(models: Models, customer_id: str, parts: Sequence[str]) -> Route:
    """The first running experiment that covers ``parts`` and the customer's arm in it; else the champions."""
    for experiment in models.experiments:
        if experiment.covers(parts):
            arm, share = assign(experiment.name, customer_id, experiment.arms)
            return Route(experiment, arm, share)
    return Route(None, None, 1.0)
