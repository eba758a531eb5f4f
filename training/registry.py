"""MLflow glue: log a model bundle as a pyfunc model, register it, move aliases, fetch a version back.

The registered artifact is the bundle directory of :mod:`features.scoring` wrapped in a small pyfunc, so
``mlflow.pyfunc.load_model("models:/churn@champion")`` works for anyone, while the service reads the bundle
files directly and never imports MLflow in its workers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import ErrorCode
from mlflow.tracking import MlflowClient

from features.scoring import Bundle, score_frame
from features.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_ARTIFACT = "bundle"


class BundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: feature frame in, the bundle's predictions out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle shipped as the model's artifact."""
        self.bundle = Bundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Score a feature frame (columns as produced by ``cxpredict features build``)."""
        return score_frame(self.bundle, model_input).reset_index(drop=True)


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking/registry URI and return a client."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def use_experiment(name: str = "cxpredict") -> None:
    """Select the experiment, unless ``mlflow run`` already chose one (it sets ``MLFLOW_RUN_ID``)."""
    import os

    if not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(name)


def log_bundle(
    bundle_dir: Path, name: str, example: pd.DataFrame, feature_set_version: str, register: bool = True
) -> int | None:
    """Log a bundle under the active run as model ``name`` and register a new version of it.

    Args:
        bundle_dir: Saved bundle directory.
        name: Registered model name (``churn``, ``cltv``, ``next_best_offer``).
        example: A few feature rows: the input example, and the input of the signature.
        feature_set_version: Stored as model metadata and version tag; serving checks it.
        register: Whether to create a registry version.

    Returns:
        The new version number, or None when not registered.
    """
    bundle = Bundle.load(bundle_dir)
    output = score_frame(bundle, example).reset_index(drop=True)
    # Integer columns would make the signature reject a missing value at inference time.
    example = example.reset_index(drop=True)
    example = example.astype({c: "float64" for c in example.columns if pd.api.types.is_integer_dtype(example[c])})
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=BundleModel(),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=infer_signature(example, output),
        input_example=example,
        metadata={"feature_set_version": feature_set_version, "kind": name},
        registered_model_name=name if register else None,
        pip_requirements=["xgboost-cpu>=3.0", "numpy", "pandas", "mlflow"],
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


#: Aliases MLflow accepts, minus its reserved ``latest`` and ``v<digits>`` (those name versions).
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)


def validate_alias(alias: str) -> None:
    """Check an alias before MLflow sees it, so that the error says what is allowed.

    Raises:
        ValueError: empty, a character other than letters, digits, ``_`` and ``-``, longer than 255, or reserved.
    """
    if not _ALIAS.fullmatch(alias):
        raise ValueError(
            f"alias {alias!r} is not valid: use 1 to 255 letters, digits, '_' or '-' (for example 'champion')"
        )
    if _RESERVED_ALIAS.fullmatch(alias):
        raise ValueError(f"alias {alias!r} is reserved by MLflow ('latest' and 'v<number>' name versions)")


def promote(client: MlflowClient, name: str, version: int, alias: str = CHAMPION) -> None:
    """Point ``alias`` of model ``name`` at ``version``.

    Raises:
        ValueError: the alias is not valid, or the model or version does not exist.
        mlflow.exceptions.MlflowException: the registry failed otherwise (unreachable, bad URI); said as such.
    """
    validate_alias(alias)
    try:
        client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ValueError(f"model '{name}' has no version {version}") from exc
        raise mlflow.exceptions.MlflowException(
            f"cannot look up version {version} of model '{name}': {exc.message}",
            error_code=ErrorCode.Value(exc.error_code),
        ) from exc
    client.set_registered_model_alias(name, alias, str(version))


def resolve(client: MlflowClient, name: str, ref: str) -> int:
    """Version number for an alias (``champion``) or a version string (``3``)."""
    if ref.isdigit():
        return int(ref)
    try:
        return int(client.get_model_version_by_alias(name, ref).version)
    except mlflow.exceptions.MlflowException as exc:
        raise ValueError(f"model '{name}' has no alias '{ref}': train first (cxpredict train or demo)") from exc


def download_bundle(client: MlflowClient, name: str, version: int, dest: Path) -> Path:
    """Download the bundle directory of a registered version into ``dest`` and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dest)))
    return _bundle_in(local)


def _bundle_in(model_dir: Path) -> Path:
    # pyfunc keeps an artifact directory under its own name inside artifacts/.
    found = next(model_dir.glob("artifacts/*/bundle.json"), None)
    if found is None:
        raise FileNotFoundError(f"{model_dir} holds no cxpredict bundle")
    return found.parent


def load_bundle(client: MlflowClient, name: str, ref: str, cache_dir: Path) -> tuple[Bundle, int]:
    """Load a registered bundle by alias or version (downloaded once into ``cache_dir``)."""
    version = resolve(client, name, ref)
    target = cache_dir / name / str(version)
    try:
        path = _bundle_in(target)
    except FileNotFoundError:
        path = download_bundle(client, name, version, target)
    return Bundle.load(path), version
