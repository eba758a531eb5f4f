"""`cxpredict serve`'s start-up check with a backend down: a StartupError naming it, never a driver traceback.

Runs the real check (:func:`serving.startup.preflight`, one worker's start-up in a child process) against ports
where nothing listens, so it needs neither Redis nor PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving.startup import StartupError, preflight
from tests.serving.conftest import API_KEY, ROOT, free_port, make_home


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")
    make_home(home)
    return {**os.environ, "CXPREDICT_HOME": str(home), "CXPREDICT_API_KEYS": API_KEY}


def check(env: dict[str, str], **backends: str) -> str:
    with pytest.raises(StartupError) as caught:
        preflight({**env, **backends}, Path(ROOT))
    return str(caught.value)


def test_redis_down_names_the_store_without_its_password(env: dict[str, str]) -> None:
    port = free_port()
    message = check(env, CXPREDICT_ONLINE_STORE=f"redis://:s3cret@127.0.0.1:{port}/4")
    assert message.startswith(f"online store redis://:***@127.0.0.1:{port}/4 is unreachable")
    assert "s3cret" not in message and "Traceback" not in message


def test_postgres_down_names_the_decision_log_without_its_password(env: dict[str, str]) -> None:
    port = free_port()
    message = check(env, CXPREDICT_DECISION_LOG=f"postgresql://postgres:s3cret@127.0.0.1:{port}/cxp")
    assert message.startswith(f"decision log postgresql://postgres:***@127.0.0.1:{port}/cxp cannot be opened")
    assert "s3cret" not in message and "Traceback" not in message
