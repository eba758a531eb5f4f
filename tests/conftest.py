"""Test lanes: `make test-fast` skips what needs a real server, `mlflow run` or a full demo (marked `slow` here)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# XGBoost's OpenMP threads spin ~0.2 s after each call by default: with servers and trainers sharing two cores
# that spinning is lost CPU. Set before any test module imports xgboost; child processes inherit it.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

#: The development machines' and CI's PostgreSQL (trust auth) and Redis; tests skip when they are unreachable.
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

#: Fixtures that start a real BentoML server.
_SERVER_FIXTURES = {"server", "client", "anon"}
#: Modules whose tests start servers, `mlflow run` or a full `cxpredict demo` themselves.
_SLOW_MODULES = {
    "test_ab_e2e",
    "test_cli",
    "test_demo_dir",
    "test_durability",
    "test_metrics",
    "test_mlproject",
    "test_reload",
    "test_replicas",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in _SLOW_MODULES or _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@contextmanager
def throwaway_database(prefix: str = "cxp_test") -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped afterwards; skips the test when PostgreSQL is down."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 as user postgres (see README, Scale-out)")
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@contextmanager
def redis_db(db: int) -> Iterator[str]:
    """The URL of Redis database ``db``, emptied before and after; skips the test when Redis is down."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (start it: see README, Scale-out)")
    client.flushdb()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for one test."""
    with throwaway_database() as url:
        yield url
