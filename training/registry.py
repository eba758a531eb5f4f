"""Training's side of MLflow: log a model bundle as a pyfunc model, register it and give it its alias.

Resolving and fetching versions back (also needed by serving) lives in :mod:`features.registry`; ``configure``
is re-exported so that a training job reads ``registry.configure`` then ``registry.log_bundle``.

The registered artifact is the bundle directory of :mod:`features.scoring` wrapped in a small pyfunc, so
``mlflow.pyfunc.load_model("models:/churn@champion")`` works for anyone, while the service reads the bundle
files directly and never imports MLflow in its workers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from features.kinds import open_bundle, score_frame
from features.registry import CHALLENGER, CHAMPION, configure
from features.scoring import Encoder

__all__ = [
    "BUNDLE_ARTIFACT",
    "BundleModel",
    "assign_alias",
    "configure",
    "log_bundle",
    "synthetic_example",
    "use_experiment",
]

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "bundle"


class BundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: feature frame in, the bundle's predictions out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle shipped as the model's artifact."""
        self.bundle = open_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Score a feature frame (columns as produced by ``cxpredict features build``)."""
        return score_frame(self.bundle, model_input).reset_index(drop=True)


def use_experiment(name: str = "cxpredict") -> None:
    """Select the experiment, unless ``mlflow run`` already chose one (it sets ``MLFLOW_RUN_ID``)."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(name)


def synthetic_example(encoder: Encoder, rows: int = 3) -> pd.DataFrame:
    """Input rows built from the encoder's schema alone, never from customers: MLflow stores the example in the run.

    Numbers are small made-up values (one row leaves them missing, as real rows may); each text attribute cycles
    through its kept categories, which the bundle already holds and which many customers share.
    """
    data: dict[str, list[Any]] = {}
    for j, col in enumerate(encoder.columns):
        cats = encoder.categories.get(col)
        if cats is not None:
            data[col] = [cats[i % len(cats)] for i in range(rows)]
        else:
            data[col] = [None if i == rows - 1 and rows > 1 else float(i + j % 7) for i in range(rows)]
    return pd.DataFrame(data).astype({c: "float64" for c in encoder.columns if c not in encoder.categories})


def log_bundle(bundle_dir: Path, name: str, feature_set_version: str, register: bool = True) -> int | None:
    """Log a bundle under the active run as model ``name`` and register a new version of it.

    The input example (and the signature's input) is :func:`synthetic_example`: no customer's row goes into MLflow.

    Args:
        bundle_dir: Saved bundle directory.
        name: Registered model name (``churn``, ``cltv``, ``next_best_offer``).
        feature_set_version: Stored as model metadata and version tag; serving checks it.
        register: Whether to create a registry version.

    Returns:
        The new version number, or None when not registered.
    """
    bundle = open_bundle(bundle_dir)
    example = synthetic_example(bundle.encoder)
    output = score_frame(bundle, example).reset_index(drop=True)
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=BundleModel(),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=infer_signature(example, output),
        input_example=example,
        metadata={"feature_set_version": feature_set_version, "kind": name},
        registered_model_name=name if register else None,
        pip_requirements=["xgboost-cpu>=3.0,<4", "numpy", "pandas", "mlflow"],
        code_paths=None,
    )
    if not register:
        return None
    version = int(info.registered_model_version)
    MlflowClient().set_model_version_tag(name, str(version), "feature_set_version", feature_set_version)
    return version


def assign_alias(client: MlflowClient, name: str, version: int, promote: bool) -> str:
    """Give a new version its alias: ``champion`` if it is the first (or ``promote``), else ``challenger``."""
    try:
        client.get_model_version_by_alias(name, CHAMPION)
        has_champion = True
    except mlflow.exceptions.MlflowException:
        has_champion = False
    alias = CHAMPION if promote or not has_champion else CHALLENGER
    client.set_registered_model_alias(name, alias, str(version))
    return alias
