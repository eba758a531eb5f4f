"""A business where BG/NBD + Gamma-Gamma is the true model: the benchmark's test of the baselines on their own ground.

Customers are acquired uniformly over the first ``acquisition_weeks`` and observed for ``weeks``. Each buys at a
rate ``lambda ~ Gamma(r, alpha)`` per week (exponential gaps), drops out after each repeat purchase with
probability ``p ~ Beta(a, b)``, and spends ``z ~ Gamma(p_gg, nu)`` per purchase with ``nu ~ Gamma(q, v)``
(Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way" and "RFM and CLV"). The defaults are the
parameters those papers fit to the CDNOW sample (1997-98, 78 weeks): r = 0.243, alpha = 4.414, a = 0.793,
b = 2.426; p = 6.25, q = 3.74, v = 15.44. No season, no trend but the cohort's own dropout.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field


class BtydSimConfig(BaseModel):
    """The simulated business (CDNOW's fitted parameters by default)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    n_customers: int = Field(6000, ge=1)
    weeks: float = Field(78.0, gt=0)
    acquisition_weeks: float = Field(12.0, gt=0)
    start: datetime = datetime(1997, 1, 1)
    r: float = 0.243
    alpha: float = 4.414
    a: float = 0.793
    b: float = 2.426
    p: float = 6.25
    q: float = 3.74
    v: float = 15.44


def simulate(config: BtydSimConfig) -> pd.DataFrame:
    """The canonical ``transactions`` table (``customer_id``, ``ts``, ``amount``) of one draw."""
    rng = np.random.default_rng(config.seed)
    n = config.n_customers
    rate = rng.gamma(config.r, 1.0 / config.alpha, n)
    dropout = rng.beta(config.a, config.b, n)
    nu = rng.gamma(config.q, 1.0 / config.v, n)
    ids, weeks, amounts = [], [], []
    for i in range(n):
        t = rng.uniform(0.0, config.acquisition_weeks)
        while True:
            ids.append(i)
            weeks.append(t)
            amounts.append(rng.gamma(config.p, 1.0 / nu[i]))
            # The next purchase, if the customer is still active after this one (dropout follows repeat purchases).
            if len(ids) > 1 and ids[-2] == i and rng.random() < dropout[i]:
                break
            t += rng.exponential(1.0 / max(rate[i], 1e-12))
            if t >= config.weeks:
                break
    start = pd.Timestamp(config.start)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in ids],
            "ts": start + pd.to_timedelta(np.asarray(weeks) * 7, unit="D").round("s"),
            "amount": np.round(amounts, 2),
        }
    )
