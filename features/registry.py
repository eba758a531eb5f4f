"""The MLflow model registry as training and serving both use it: aliases, versions, and bundles fetched back.

Training registers versions (:mod:`training.registry`); ``cxpredict promote``, ``cxpredict predict/evaluate``,
the serve parent (:mod:`serving.manifest`) and ``cxpredict ab start`` resolve and fetch them through this module,
so serving never imports training. The service's workers never import it: they read the bundle files the serve
parent downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
from mlflow.protos.databricks_pb2 import ErrorCode
from mlflow.tracking import MlflowClient

from features.kinds import open_bundle
from features.private_files import private_dir
from features.scoring import META_FILE, Bundle
from features.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Artifact path, in a version's training run, of the bundle fitted without that run's holdout (where it has one).
HOLDOUT_BUNDLE = "holdout_bundle"

#: Aliases MLflow accepts, minus its reserved ``latest`` and ``v<digits>`` (those name versions).
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}")
_RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the configured tracking/registry URI and return a client."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


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
    private_dir(dest)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dest)))
    return _bundle_in(local)


def load_holdout_bundle(client: MlflowClient, name: str, version: int, cache_dir: Path) -> Bundle | None:
    """The bundle the training run of ``version`` fitted without its holdout, or None where it logged none.

    Its ``trained_as_of`` is where the holdout starts: rows from there on are out of its sample, so a decision
    procedure can be evaluated on them although the registered version was refitted on every row.
    """
    target = cache_dir / name / f"{version}-{HOLDOUT_BUNDLE}"
    if not (target / HOLDOUT_BUNDLE / META_FILE).is_file():
        run_id = client.get_model_version(name, str(version)).run_id
        if not run_id or not any(f.path == HOLDOUT_BUNDLE for f in client.list_artifacts(run_id)):
            return None
        private_dir(target)
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HOLDOUT_BUNDLE, dst_path=str(target))
    return open_bundle(target / HOLDOUT_BUNDLE)


def _bundle_in(model_dir: Path) -> Path:
    # pyfunc keeps an artifact directory under its own name inside artifacts/.
    found = next(model_dir.glob(f"artifacts/*/{META_FILE}"), None)
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
    return open_bundle(path), version
