"""Typed training configuration (``extra="forbid"`` so a typo in a key is an error, not a silent default)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.engines import EngineName
from features.kinds import KIND_NAMES

#: The models training can fit: one per model kind, in the kinds' order.
MODEL_NAMES: tuple[str, ...] = KIND_NAMES
ModelName = Literal[MODEL_NAMES]  # type: ignore[valid-type]


class XGBParams(BaseModel):
    """Gradient-boosting settings shared by the three models.

    Attributes:
        n_estimators: Trees at most.
        early_stopping_rounds: Churn and CLTV stop adding trees once this many in a row have not improved the loss
            on the newest training snapshot (later in time than the rest); ``None`` always fits ``n_estimators``.
            The next-best-offer model always fits ``n_estimators``: its loss is dominated by the baseline
            acceptance, and stopping on it would cut the trees that carry the (small) uplift.
    """

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(300, ge=1)
    early_stopping_rounds: int | None = Field(30, ge=1)
    max_depth: int = Field(4, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    min_child_weight: float = Field(5.0, ge=0)


class EffectLearnerParams(BaseModel):
    """Tree counts of the next-best-offer T-, X- and DR-learners (:mod:`training.learners`).

    Attributes:
        n_estimators: Trees of each per-arm outcome model.
        effect_estimators: Trees of each effect (pseudo-outcome) model: effects are small and noisy, so fewer.
    """

    model_config = ConfigDict(extra="forbid")

    n_estimators: int = Field(200, ge=1)
    effect_estimators: int = Field(100, ge=1)


class TrainConfig(BaseModel):
    """Everything that decides what ``cxpredict train`` fits.

    Attributes:
        horizon_days: Churn and spend horizon H.
        cltv_horizon_days: Horizon of the long-run value.
        snapshot_step_days: Spacing of the stacked training cut-offs.
        max_snapshots: How many training cut-offs to stack at most.
        min_history_days: History a cut-off needs before it (earlier cut-offs are skipped).
        response_window_days: Days after an offer's ``ts`` when its outcome counts as known without
            ``offers.responded_ts`` (a feature setting: part of the feature-set version).
        models: Which models to train.
        promote: Make the new versions ``champion`` (otherwise only the first version is).
        seed: Seed of every random choice.
        min_customers: Fewer customers in a snapshot is an error.
        year_ago_backtest: Set the churn rate and the CLTV spend level for the target's season by the same fit
            made a year earlier (:mod:`training.backtest`), where the history reaches that far; off, the fits are
            faster and keep the training windows' levels.
        engine: Where the snapshots' feature and label SQL runs (``--engine``): the same values either way.
        offer_value: What the offer policy is decided in (``--offer-value``): ``auto``, the spend customers
            logged where the offers log it (a ``revenue`` on every accepted row and a control arm; spend models
            join the candidates), else acceptance x the catalog's value; ``acceptance``, always acceptance x the
            catalog's value (spend is still reported beside it).
        xgb: Booster settings of churn, CLTV and the S-learner.
        effect_learners: Tree counts of the T-, X- and DR-learners.
    """

    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(90, ge=1)
    cltv_horizon_days: int = Field(365, ge=1)
    snapshot_step_days: int = Field(30, ge=1)
    max_snapshots: int = Field(6, ge=1)
    min_history_days: int = Field(60, ge=0)
    response_window_days: int = Field(14, ge=0)
    models: tuple[ModelName, ...] = MODEL_NAMES
    promote: bool = False
    seed: int = 0
    min_customers: int = Field(50, ge=1)
    year_ago_backtest: bool = True
    xgb: XGBParams = Field(default_factory=XGBParams)
    effect_learners: EffectLearnerParams = Field(default_factory=EffectLearnerParams)
    engine: EngineName = "duckdb"
    offer_value: Literal["auto", "acceptance"] = "auto"
