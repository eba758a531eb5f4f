"""Runtime settings shared by every command: where MLflow, the online store and the decision log live.

Values come from environment variables (CONTRACT §3) and are read when :func:`load_settings` is called, never
at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Locations and secrets, resolved from the environment.

    Attributes:
        tracking_uri: MLflow tracking (and registry) URI.
        home: Directory of the online store, decision log, experiments and reports.
        api_keys: Keys the API accepts; empty means "the key ``demo`` generated".
        online_store_url: Redis URL of the online store, or None for the embedded one.
        decision_log_url: PostgreSQL URL of the decision log, or None for the embedded one.
        experiments_file: The experiments file when replicas share one, else None (under ``home``).
    """

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str = Field(description="MLflow tracking URI (env MLFLOW_TRACKING_URI)")
    home: Path = Field(description="cxpredict state directory (env CXPREDICT_HOME)")
    api_keys: tuple[str, ...] = Field(default=(), description="accepted API keys (env CXPREDICT_API_KEYS)")
    online_store_url: str | None = Field(
        default=None, description="redis://host:port/db, or None for the embedded store (env CXPREDICT_ONLINE_STORE)"
    )
    decision_log_url: str | None = Field(
        default=None, description="postgresql://..., or None for the embedded log (env CXPREDICT_DECISION_LOG)"
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
    keys = tuple(k.strip() for k in env.get("CXPREDICT_API_KEYS", "").split(",") if k.strip())
    return Settings(
        tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{cwd / 'mlflow.db'}",
        home=Path(env.get("CXPREDICT_HOME") or cwd / ".cxpredict"),
        api_keys=keys,
        online_store_url=env.get("CXPREDICT_ONLINE_STORE") or None,
        decision_log_url=env.get("CXPREDICT_DECISION_LOG") or None,
        experiments_file=Path(env["CXPREDICT_EXPERIMENTS"]).absolute() if env.get("CXPREDICT_EXPERIMENTS") else None,
    )
