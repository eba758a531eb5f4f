"""deploy/compose.yaml checked without a container runtime: its shape, its command, and the variables it sets.

The development machine has a Docker client but no daemon (README, Deployment), so the replicas are never started
here. What can be checked is: the file follows the Compose Specification's structure (the checks below, and
``docker compose config`` / ``docker-compose config`` where such a binary is installed), the replicas' command is
one ``cxpredict`` accepts, and every environment variable it sets is one the service reads (CONTRACT §3).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer
import yaml

from cxpredict.cli import app
from features.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy/compose.yaml"
#: Top-level keys the Compose Specification allows (plus ``x-`` extensions).
TOP_LEVEL = {"version", "name", "include", "services", "networks", "volumes", "configs", "secrets", "models"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` as Compose interpolates them.
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, failing as Compose does for ``${NAME:?error}`` when NAME is unset."""

    def sub(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return INTERPOLATION.sub(sub, value)


def replica_env(env: dict[str, str]) -> dict[str, str]:
    """The environment a replica container gets (``environment:`` with variables substituted from ``env``)."""
    raw = load()["services"]["replica"]["environment"]
    assert isinstance(raw, dict), "replica environment: use the mapping form"
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def test_compose_file_has_the_specification_shape() -> None:
    spec = load()
    assert set(spec) - TOP_LEVEL <= {k for k in spec if k.startswith("x-")}, set(spec) - TOP_LEVEL
    services, volumes = spec["services"], spec.get("volumes") or {}
    assert {"postgres", "redis", "replica"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: needs an image or a build"
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str | int | float | bool) or value is None, f"{name}.environment.{key}"
        check = service.get("healthcheck")
        if check:
            assert check["test"][0] in ("CMD", "CMD-SHELL", "NONE"), f"{name}: healthcheck test form"
        for target, dep in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on an undefined service {target}"
            assert dep["condition"] in CONDITIONS, f"{name}.depends_on.{target}"
            if dep["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), f"{target} has no healthcheck to wait for"
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if not source.startswith(("/", ".", "~")):  # a named volume, not a bind mount
                assert source in volumes, f"{name}: volume {source} is not declared at the top level"


def test_replicas_scale_without_port_clashes_and_run_cxpredict_serve() -> None:
    replica = load()["services"]["replica"]
    assert replica["deploy"]["replicas"] >= 2
    # A fixed host port ("3000:3000") would let only one replica start on a host.
    assert all(":" not in str(p) for p in replica["ports"]), replica["ports"]
    command = replica["command"]
    assert command[:4] == ["python", "-m", "cxpredict.cli", "serve"], command
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    ctx = serve.make_context("serve", list(command[4:]))  # parses the options exactly as the CLI would
    assert ctx.params["host"] == "0.0.0.0"
    assert f"127.0.0.1:{ctx.params['port']}/readyz" in " ".join(replica["healthcheck"]["test"])


def test_every_variable_the_replicas_get_is_one_the_service_reads(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded defaults hang off the working directory
    env = replica_env({"CXPREDICT_API_KEYS": "k1,k2"})
    settings = load_settings(env)
    for key in env:
        without = load_settings({k: v for k, v in env.items() if k != key})
        assert without != settings, f"{key} is set in deploy/compose.yaml but the service does not read it"
    # Shared backends, as CONTRACT §3 names them; the state directory stays per replica.
    assert settings.online_store_url and settings.online_store_url.startswith("redis://redis:")
    assert settings.decision_log_url and settings.decision_log_url.startswith("postgresql://")
    assert settings.tracking_uri.startswith("postgresql://")
    assert settings.api_keys == ("k1", "k2")
    mounts = [PurePosixPath(m.split(":")[1]) for m in load()["services"]["replica"]["volumes"]]
    experiments = PurePosixPath(str(settings.experiments_file))
    assert any(experiments.is_relative_to(m) for m in mounts), "the experiments file must be on a shared volume"
    assert not any(PurePosixPath(str(settings.home)).is_relative_to(m) for m in mounts), "home is per replica"


def test_api_keys_must_be_given() -> None:
    with pytest.raises(KeyError, match="CXPREDICT_API_KEYS"):
        replica_env({})


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_cli_accepts_the_file() -> None:
    """``config`` parses, validates against the Compose schema and interpolates; it needs no Docker daemon."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (Python checks above still ran)")
    done = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        env={"PATH": "/usr/bin:/bin", "CXPREDICT_API_KEYS": "k1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
