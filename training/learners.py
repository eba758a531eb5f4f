"""Heterogeneous-effect learners for the next best offer: T-, X- and DR-learners over XGBoost.

Each learner turns logged offers (ideally randomized, with a control arm) into boosters that
:meth:`features.scoring.Bundle.offer_scores` reads in its ``effect`` layout: a ``control`` booster for the outcome
without an offer, and per offer ``j`` either an outcome booster ``arm{j}`` (T-learner: uplift = arm - control) or
effect boosters ``tau{j}`` (DR-learner) / ``tau{j}_t`` and ``tau{j}_c`` blended by a stored weight (X-learner).
The S-learner of :mod:`training.uplift` stays the ``main`` layout.

Why several: the S-learner's trees are not forced to split on the offer, so effects that differ by customer are
shrunk towards one average; T/X/DR-learners model each offer's effect on its own (Künzel et al. 2019; Kennedy
2023). Which one is served is decided on the holdout by :mod:`training.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xgboost as xgb

LearnerName = Literal["t", "x", "dr"]
LEARNERS: tuple[LearnerName, ...] = ("t", "x", "dr")


@dataclass(frozen=True)
class LearnerParams:
    """Booster settings of the per-arm outcome and effect models.

    Attributes:
        n_estimators: Trees of each outcome model.
        effect_estimators: Trees of each effect (pseudo-outcome) model: effects are small and noisy, so fewer.
        max_depth: Depth of outcome trees (effect trees use one less, at least 2).
        learning_rate: Shrinkage.
        min_child_weight: Hessian mass per leaf (outcome models).
        folds: Cross-fitting folds of the DR-learner's nuisance models.
        seed: Seed of every random choice.
    """

    n_estimators: int = 200
    effect_estimators: int = 100
    max_depth: int = 3
    learning_rate: float = 0.05
    min_child_weight: float = 5.0
    folds: int = 2
    seed: int = 0


def _outcome_params(p: LearnerParams, binary: bool) -> dict[str, Any]:
    return {
        "objective": "binary:logistic" if binary else "reg:tweedie",
        "max_depth": p.max_depth,
        "eta": p.learning_rate,
        "min_child_weight": p.min_child_weight,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "tree_method": "hist",
        "seed": p.seed,
        "nthread": 2,
    }


def _effect_params(p: LearnerParams, n_rows: int) -> dict[str, Any]:
    # Pseudo-outcomes are noisy: shallow trees, big leaves and an L2 penalty keep the effect from chasing noise.
    return {
        "objective": "reg:squarederror",
        "max_depth": max(2, p.max_depth - 1),
        "eta": p.learning_rate,
        "min_child_weight": max(20.0, n_rows / 50.0),
        "reg_lambda": 10.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "tree_method": "hist",
        "seed": p.seed,
        "nthread": 2,
    }


def _fit(x: np.ndarray, y: np.ndarray, params: dict[str, Any], rounds: int, weight: np.ndarray | None = None):
    dm = xgb.DMatrix(x, label=y, weight=weight, missing=np.nan)
    return xgb.train(params, dm, num_boost_round=rounds)


@dataclass
class EffectModel:
    """A fitted T-, X- or DR-learner: what a bundle stores and how its uplift is read back.

    Attributes:
        learner: ``t``, ``x`` or ``dr``.
        offers: Offer ids (control excluded), sorted; index ``j`` of every booster name.
        boosters: Named boosters (``control``, ``arm{j}``, ``tau{j}``, ``tau{j}_t``, ``tau{j}_c``).
        x_weights: X-learner only: weight ``g_j`` of the control-side effect model per offer.
    """

    learner: LearnerName
    offers: list[str]
    boosters: dict[str, xgb.Booster]
    x_weights: list[float] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        """What :meth:`features.scoring.Bundle.offer_scores` needs to read the boosters back."""
        return {"layout": "effect", "learner": self.learner, "x_weights": self.x_weights}

    def outcomes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outcome under control ``(n,)`` and uplift per offer ``(n, k)`` (the same arithmetic as serving)."""
        from features.kinds.next_best_offer import effect_uplift

        return effect_uplift(self.meta(), len(self.offers), x, lambda name, m: self.boosters[name].inplace_predict(m))


def fit_effect_model(
    learner: LearnerName,
    x: np.ndarray,
    offer: np.ndarray,
    y: np.ndarray,
    control: str,
    propensity: np.ndarray | None = None,
    params: LearnerParams | None = None,
) -> EffectModel:
    """Fit one heterogeneous-effect learner on logged offers.

    Args:
        learner: ``t`` (one outcome model per arm), ``x`` (Künzel's X-learner: imputed effects regressed per side,
            blended by the arms' shares) or ``dr`` (Kennedy's DR-learner: the cross-fitted doubly robust
            pseudo-outcome regressed on the features).
        x: Encoded customer features ``(n, d)``.
        offer: Logged offer id per row; ``control`` marks the no-offer arm.
        y: Outcome per row (0/1 acceptance, or non-negative spend).
        control: Id of the control arm.
        propensity: Logging probability of each row's own arm; ``None`` uses the arms' shares (a randomized log).
        params: Booster settings.

    Raises:
        ValueError: no control rows, or no treated rows.
    """
    p = params or LearnerParams()
    offer = np.asarray(offer).astype(str)
    y = np.asarray(y, dtype=np.float64)
    binary = bool(np.isin(y, (0.0, 1.0)).all())
    is_c = offer == control
    offers = sorted(set(offer[~is_c].tolist()))
    if not is_c.any() or not offers:
        raise ValueError("effect learners need control rows and at least one offer")
    if propensity is None or np.isnan(propensity).any():
        share = {a: float(np.mean(offer == a)) for a in [control, *offers]}
        prop = np.array([share[a] for a in offer])
    else:
        prop = np.asarray(propensity, dtype=np.float64)
    oparams = _outcome_params(p, binary)
    boosters: dict[str, xgb.Booster] = {"control": _fit(x[is_c], y[is_c], oparams, p.n_estimators)}
    weights: list[float] = []
    mu0 = boosters["control"].inplace_predict(x)
    for j, o in enumerate(offers):
        is_t = offer == o
        eparams = _effect_params(p, int((is_t | is_c).sum()))
        if learner == "dr":
            boosters[f"tau{j}"] = _dr_effect(x, y, is_t, is_c, prop, oparams, eparams, p)
            continue
        arm = _fit(x[is_t], y[is_t], oparams, p.n_estimators)
        if learner == "t":
            boosters[f"arm{j}"] = arm
            continue
        mu1 = arm.inplace_predict(x)
        # X-learner: imputed effects: treated rows against the control model, control rows against the offer's model.
        boosters[f"tau{j}_t"] = _fit(x[is_t], y[is_t] - mu0[is_t], eparams, p.effect_estimators)
        boosters[f"tau{j}_c"] = _fit(x[is_c], mu1[is_c] - y[is_c], eparams, p.effect_estimators)
        # Künzel's g = e: a rare offer has a poor outcome model, so the control side (which imputes with it)
        # gets the small weight e and the treated side (imputed with the control model) the rest.
        e_t = float(np.mean(prop[is_t])) / (float(np.mean(prop[is_t])) + float(np.mean(prop[is_c])))
        weights.append(e_t)
    return EffectModel(learner, offers, boosters, weights)


def _dr_effect(
    x: np.ndarray,
    y: np.ndarray,
    is_t: np.ndarray,
    is_c: np.ndarray,
    prop: np.ndarray,
    oparams: dict[str, Any],
    eparams: dict[str, Any],
    p: LearnerParams,
) -> xgb.Booster:
    """DR-learner for one offer: cross-fitted nuisance outcomes, then a regression of the DR pseudo-outcome."""
    rows = np.flatnonzero(is_t | is_c)
    rng = np.random.default_rng(p.seed)
    fold = rng.integers(0, p.folds, size=rows.size)
    mu1 = np.empty(rows.size)
    mu0 = np.empty(rows.size)
    for k in range(p.folds):
        out = fold == k
        fit_rows = rows[~out]
        t_rows = fit_rows[is_t[fit_rows]]
        c_rows = fit_rows[is_c[fit_rows]]
        mu1[out] = _fit(x[t_rows], y[t_rows], oparams, p.n_estimators).inplace_predict(x[rows[out]])
        mu0[out] = _fit(x[c_rows], y[c_rows], oparams, p.n_estimators).inplace_predict(x[rows[out]])
    t = is_t[rows].astype(float)
    # Propensity of the offer within the pair (offer vs control): the pseudo-outcome compares only these two arms.
    share_t = float(np.mean(prop[rows][t == 1.0])) if t.any() else 0.5
    share_c = float(np.mean(prop[rows][t == 0.0])) if (t == 0).any() else 0.5
    e = share_t / (share_t + share_c)
    yr = y[rows]
    phi = mu1 - mu0 + t / e * (yr - mu1) - (1.0 - t) / (1.0 - e) * (yr - mu0)
    return _fit(x[rows], phi, eparams, p.effect_estimators)
