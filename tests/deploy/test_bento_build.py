"""`bentoml build` packs the service from bentofile.yaml into a Bento (in a temporary BENTOML_HOME).

BentoML (1.4) runs ``uv`` while building; it uses the ``uv`` on ``PATH`` and otherwise tries ``pip install uv``,
which a uv-made virtual environment cannot do (it has no pip). The build therefore gets the uv that ``make venv``
bootstraps (``.uv-boot/bin/uv``) or one on ``PATH`` — the way README (Deployment) says to build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ["export", "--frozen", "--offline", "--no-dev", "--no-hashes", "--no-emit-project"]


def find_uv() -> str:
    uv = ROOT / ".uv-boot/bin/uv"
    found = str(uv) if uv.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("no uv binary (run `make venv`, which bootstraps .uv-boot/bin/uv)")
    return found


def requirement_lines(text: str) -> list[str]:
    """The requirement lines of a requirements file (no comments: uv's `# via` notes vary between versions)."""
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_bento_requirements_are_the_lock_file() -> None:
    """deploy/requirements.txt (what the Bento installs) is uv.lock exported, not a stale copy."""
    done = subprocess.run([find_uv(), *EXPORT], cwd=ROOT, capture_output=True, text=True, check=True)
    pinned = (ROOT / "deploy/requirements.txt").read_text()
    assert requirement_lines(pinned) == requirement_lines(done.stdout), (
        "deploy/requirements.txt is out of date: regenerate it with "
        "`.uv-boot/bin/uv export --frozen --no-dev --no-hashes --no-emit-project -o deploy/requirements.txt`"
    )


def pins(text: str) -> set[str]:
    """``name==version`` of every requirement line, without its environment marker."""
    return {line.split(";")[0].strip() for line in requirement_lines(text)}


@pytest.mark.slow
def test_bentoml_build_makes_a_bento_of_the_service(tmp_path: Path) -> None:
    uv = find_uv()
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": os.pathsep.join([str(Path(uv).parent), os.environ.get("PATH", "")]),
    }
    done = subprocess.run(
        [str(ROOT / ".venv/bin/bentoml"), "build", "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (bento,) = (tmp_path / "bentoml" / "bentos" / "cxpredict").glob("*/bento.yaml")
    info = yaml.safe_load(bento.read_text())
    assert info["service"] == "serving.service:CxPredict" and info["name"] == "cxpredict"
    src = bento.parent / "src"
    for needed in ("serving/service.py", "serving/cli_serve.py", "features/scoring.py", "cxpredict/cli.py"):
        assert (src / needed).is_file(), needed
    assert not (src / "tests").exists() and not (src / "training").exists()
    # Every pin of the lock file goes into the Bento (BentoML rewrites the environment markers).
    installed = pins((bento.parent / "env/python/requirements.txt").read_text())
    pinned = pins((ROOT / "deploy/requirements.txt").read_text())
    assert pinned <= installed, sorted(pinned - installed)
    # The Bento publishes the same API schema the running service does.
    assert "/v1/personalize" in (bento.parent / "apis/openapi.yaml").read_text()
