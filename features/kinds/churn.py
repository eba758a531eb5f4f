"""The churn kind: a calibrated probability of churning within the horizon, its risk band and its reasons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field
from typing_extensions import TypedDict

from features.btyd_inputs import WithBtydInputs, no_purchase_logit
from features.churn_blend import blend_probability
from features.definitions import CANCELLED_FEATURE
from features.kinds.base import BundleMeta, ModelKind, Reason, ScoreContext
from features.scoring import TOP_REASONS, Bundle

RISK_BANDS: tuple[tuple[float, str], ...] = ((0.3, "low"), (0.6, "medium"), (1.01, "high"))
#: The band of a customer cancelled before T (CONTRACT §2): answered as already churned, probability 1.0.
CHURNED_BAND = "churned"
#: Every churn risk band, as :func:`risk_band` names them.
RISK_BAND_NAMES: tuple[str, ...] = (*(name for _, name in RISK_BANDS), CHURNED_BAND)


def risk_band(probability: float, cancelled: bool = False) -> str:
    """``low``/``medium``/``high`` churn risk for a calibrated probability; ``churned`` when cancelled before T."""
    if cancelled:
        return CHURNED_BAND
    return next(name for bound, name in RISK_BANDS if probability < bound)


class ChurnMeta(BundleMeta):
    """A churn bundle's metadata.

    Attributes:
        blend: The logistic blend of the booster, an RFM regression and BG/NBD's churn probability, and its
            calibration (:func:`features.churn_blend.blend_probability`).
        calibration: An isotonic map ``{"x": [...], "y": [...]}``: only bundles registered before the blend have
            one (training always fits a blend now); they are still read so that registered versions keep serving.
        bgnbd: BG/NBD parameters (:class:`features.btyd.BGParams`, plus ``horizon_days``) whose per-customer
            P(alive) and expected orders the booster reads after the feature table's columns
            (:func:`features.btyd_inputs.bgnbd_inputs`); ``None``: the booster reads the feature table alone.
    """

    blend: dict[str, Any] | None = None
    bgnbd: dict[str, float] | None = None
    calibration: dict[str, list[float]] | None = None


class ChurnPart(TypedDict, total=False):
    """Churn risk."""

    available: bool
    probability: Annotated[float | None, Field(description="calibrated probability of churn within horizon")]
    risk_band: Annotated[
        str | None,
        Field(
            description=f"{', '.join(RISK_BAND_NAMES[:-1])}; {CHURNED_BAND} for a customer cancelled before the as-of "
            "time (probability 1.0)",
            json_schema_extra={"enum": [*RISK_BAND_NAMES, None]},
        ),
    ]
    reasons: Annotated[
        list[Reason], Field(description="the strongest factors pushing the risk up, then those holding it down")
    ]
    horizon_days: int | None
    reason: Annotated[str | None, Field(description="why the part is unavailable")]


@dataclass
class ChurnBundle(WithBtydInputs, Bundle):
    """A churn model: the booster, blended with an RFM regression and calibrated."""

    meta: ChurnMeta  # type: ignore[assignment]
    meta_type: ClassVar[type[BundleMeta]] = ChurnMeta

    def prepare_online(self) -> None:
        """Forests and SHAP tables (the reasons) before the first request."""
        super().prepare_online()
        self._predictor("main").prepare_contributions()

    @property
    def btyd_params(self) -> dict[str, float] | None:
        """The BG/NBD inputs' parameters (:mod:`features.btyd_inputs`)."""
        return self.meta.bgnbd

    def no_purchase_logit(self, x: np.ndarray) -> np.ndarray | None:
        """BG/NBD's churn logit per encoded row where the blend reads it (``None`` where it does not)."""
        if not self.meta.bgnbd or len((self.meta.blend or {}).get("weights", ())) < 3:
            return None
        return no_purchase_logit(x, self.encoder.columns, self.meta.bgnbd)

    def churn_probability(self, x: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
        """Calibrated churn probabilities for encoded rows; exactly 1.0 for a customer cancelled before T.

        ``inputs`` is :meth:`inputs` of ``x`` when the caller has it already (an answer computes it once).
        """
        raw = self._predictor("main").predict(self.inputs(x) if inputs is None else inputs)
        if blend := self.meta.blend:
            p = blend_probability(raw, x, self.encoder.columns, blend, self.no_purchase_logit(x))
        else:
            cal = self.meta.calibration
            p = np.asarray(raw, dtype=np.float64) if not cal else np.interp(raw, cal["x"], cal["y"])
        return np.where(self.cancelled(x), 1.0, p)

    def churn_reasons(
        self, x: np.ndarray, top: int = TOP_REASONS, inputs: np.ndarray | None = None
    ) -> list[list[Reason]]:
        """The churn reasons both ways (:meth:`reasons`); a cancelled customer's one reason is the cancellation."""
        out = self.reasons(self.inputs(x) if inputs is None else inputs, "main", top)
        j = self.encoder._index.get(CANCELLED_FEATURE)
        for i in np.flatnonzero(self.cancelled(x)):
            out[i] = [self._reason(j, 1.0, None, "up")]  # type: ignore[arg-type]
        return out


class Churn(ModelKind):
    """The churn kind."""

    name = "churn"
    about = "Churn probability, risk band and reasons"
    bundle_type = ChurnBundle
    part = ChurnPart
    columns = ("churn_probability", "churn_risk_band")

    def probabilities(self, ctx: ScoreContext) -> np.ndarray | None:
        """The churn probabilities of ``ctx.rows`` (computed once per context), or None without a churn model."""
        bundle = ctx.bundles.get(self.name)
        if bundle is None:
            return None
        return ctx.shared(self.name, lambda: bundle.churn_probability(ctx.matrix(self.name), self._inputs(bundle, ctx)))

    def _inputs(self, bundle: ChurnBundle, ctx: ScoreContext) -> np.ndarray:
        """The booster's inputs for ``ctx.rows`` (BG/NBD quantities included), computed once per context."""
        return ctx.shared(f"{self.name}.inputs", lambda: bundle.inputs(ctx.matrix(self.name)))

    def score(self, bundle: ChurnBundle, ctx: ScoreContext) -> list[ChurnPart]:
        """Probability, risk band, reasons per row."""
        x = ctx.matrix(self.name)
        probs = self.probabilities(ctx)
        assert probs is not None
        cancelled = bundle.cancelled(x)
        reasons = bundle.churn_reasons(x, inputs=self._inputs(bundle, ctx))
        horizon = bundle.meta.horizon_days
        out = []
        for i in range(x.shape[0]):
            p = float(probs[i])
            out.append(
                ChurnPart(
                    available=True,
                    probability=p,
                    risk_band=risk_band(p, bool(cancelled[i])),
                    reasons=reasons[i],
                    horizon_days=horizon,
                )
            )
        return out

    def frame(self, bundle: ChurnBundle, x: np.ndarray, frame: Any, known: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """``churn_probability`` and ``churn_risk_band``."""
        probs = bundle.churn_probability(x)
        bands = [risk_band(float(p), bool(c)) for p, c in zip(probs, bundle.cancelled(x), strict=True)]
        return {"churn_probability": probs, "churn_risk_band": bands}


CHURN = Churn()
