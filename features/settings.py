"""Runtime settings shared by every command: where MLflow, the online store and the decision log live.

Values come from environment variables (CONTRACT §3) and are read when :func:`load_settings` is called, never
at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: Days decisions and feedback are kept (CXPREDICT_RETENTION_DAYS).
DEFAULT_RETENTION_DAYS = 400
#: Request ``context`` keys logged with a decision (CXPREDICT_CONTEXT_KEYS, comma-separated).
DEFAULT_CONTEXT_KEYS = ("channel", "campaign", "placement")


class Settings(BaseModel):
    """Locations and secrets, resolved from the environment.

    Attributes:
        tracking_uri: MLflow tracking (and registry) URI.
        home: Directory of the online store, decision log, experiments and reports.
        api_keys: Entries of ``CXPREDICT_API_KEYS`` (:mod:`serving.keys`); None when it is unset.
        rate_limit: Requests per second each API key may make per worker (0: no limit).
        rate_burst: Requests an API key may make at once before the limit applies.
        online_store_url: Redis URL of the online store, or None for the embedded one.
        decision_log_url: PostgreSQL URL of the decision log, or None for the embedded one.
        experiments_file: The experiments file when replicas share one, else None (under ``home``).
    """

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(description="MLflow tracking URI (env MLFLOW_TRACKING_URI)")
    home: Path = Field(description="cxpredict state directory (env CXPREDICT_HOME)")
    api_keys: tuple[str, ...] | None = Field(default=None, description="API key entries (env CXPREDICT_API_KEYS)")
    rate_limit: float = Field(default=0.0, ge=0, description="requests/s per key per worker (env CXPREDICT_RATE_LIMIT)")
    rate_burst: float = Field(0.0, ge=0, description="burst per key, default 2 s of rate (env CXPREDICT_RATE_BURST)")
    online_store_url: str | None = Field(
        default=None, description="redis://host:port/db, or None for the embedded store (env CXPREDICT_ONLINE_STORE)"
    )
    decision_log_url: str | None = Field(
        default=None, description="postgresql://..., or None for the embedded log (env CXPREDICT_DECISION_LOG)"
    )
    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        description="decisions and feedback older than this are erased (env CXPREDICT_RETENTION_DAYS)",
    )
    context_keys: tuple[str, ...] = Field(
        default=DEFAULT_CONTEXT_KEYS,
        description="request `context` keys logged with a decision; others are dropped (env CXPREDICT_CONTEXT_KEYS)",
    )
    experiments_file: Path | None = Field(
        default=None,
        description="experiments file shared by replicas, or None for $CXPREDICT_HOME/experiments.yaml "
        "(env CXPREDICT_EXPERIMENTS)",
    )

    @property
    def online_store_dir(self) -> Path:
        """Directory of the embedded online store."""
        return self.home / "online"

    @property
    def demo_key_file(self) -> Path:
        """Where ``demo`` stores the API key it generated."""
        return self.home / "api_key"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from environment variables, with the embedded defaults of CONTRACT §3.

    Args:
        environ: Mapping to read instead of ``os.environ`` (tests).
    """
    env = os.environ if environ is None else environ
    cwd = Path.cwd()
    raw_keys = env.get("CXPREDICT_API_KEYS")
    keys = None if raw_keys is None else tuple(k.strip() for k in raw_keys.split(",") if k.strip())
    rate = float(env.get("CXPREDICT_RATE_LIMIT") or 0)
    privacy: dict[str, object] = {}
    if env.get("CXPREDICT_RETENTION_DAYS"):
        privacy["retention_days"] = env["CXPREDICT_RETENTION_DAYS"]
    if "CXPREDICT_CONTEXT_KEYS" in env:  # set but empty: no context is logged at all
        privacy["context_keys"] = tuple(k.strip() for k in env["CXPREDICT_CONTEXT_KEYS"].split(",") if k.strip())
    return Settings(
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{cwd / 'mlflow.db'}",
        home=Path(env.get("CXPREDICT_HOME") or cwd / ".cxpredict"),
        api_keys=keys,
        rate_limit=rate,
        rate_burst=float(env.get("CXPREDICT_RATE_BURST") or 2 * rate),
        online_store_url=env.get("CXPREDICT_ONLINE_STORE") or None,
        decision_log_url=env.get("CXPREDICT_DECISION_LOG") or None,
        experiments_file=Path(env["CXPREDICT_EXPERIMENTS"]).absolute() if env.get("CXPREDICT_EXPERIMENTS") else None,
        **privacy,
    )
