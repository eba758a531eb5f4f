"""Test lanes: `make test-fast` skips what needs a real server, `mlflow run` or a full demo (marked `slow` here)."""

from __future__ import annotations

import pytest

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
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in _SLOW_MODULES or _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
