"""Schemathesis against the published spec (``/docs.json``): every operation, a bounded number of generated cases.

Valid and invalid bodies both: no answer is a 5xx, every 4xx is the contract's ``{"error", "detail"}`` JSON, and
every answer conforms to the schema published for its status.
"""

from __future__ import annotations

import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.serving.conftest import API_KEY, Server

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation import GenerationMode  # noqa: E402

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
#: Cases per operation and generation mode (CI-sized; raise CXPREDICT_FUZZ_EXAMPLES for a longer run).
EXAMPLES = int(os.environ.get("CXPREDICT_FUZZ_EXAMPLES", "25"))


def check_answer(response: object, case: object) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    label = f"{case.method} {case.path} -> {status}: {response.text[:300]}"  # type: ignore[attr-defined]
    assert status < 500, label
    if 400 <= status < 500:
        body = response.json()  # type: ignore[attr-defined]
        assert isinstance(body, dict) and set(body) == {"error", "detail"}, label
        assert isinstance(body["error"], str) and body["error"], label


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_answers_without_server_errors(server: Server, client: httpx.Client, mode: object) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json", headers=HEADERS, timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {op.path for op in operations}
    assert {"/v1/personalize", "/v1/personalize/batch", "/v1/feedback"} <= paths, paths
    checked = 0
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not operation.body:
            continue  # nothing to make invalid (health and metrics take no input)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: object) -> None:
            response = case.call(base_url=server.url, headers=HEADERS, timeout=10)  # type: ignore[attr-defined]
            check_answer(response, case)
            if response.status_code < 500:
                case.validate_response(  # type: ignore[attr-defined]
                    response,
                    checks=[schemathesis.checks.response_schema_conformance],
                )

        run()
        checked += 1
    assert checked >= 6, [op.path for op in operations]
