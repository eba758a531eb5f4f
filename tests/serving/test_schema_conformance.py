"""Real answers from a running server validate against the schema ``/docs.json`` publishes for them (CONTRACT §4).

The published schemas are made strict before validating (every object with ``properties`` gets
``additionalProperties: false``), so a field the server sends but the spec does not name fails too: a client
generated from the spec must be able to read every answer.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import jsonschema
import pytest

from tests.serving.conftest import N_CUSTOMERS, Server


def _strict(node: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever an object lists its properties."""
    if isinstance(node, dict):
        out = {key: _strict(value) for key, value in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(item) for item in node]
    return node


@pytest.fixture(scope="module")
def spec(anon: httpx.Client) -> dict[str, Any]:
    response = anon.get("/docs.json")
    assert response.status_code == 200
    return response.json()


def check(spec: dict[str, Any], path: str, response: httpx.Response, method: str = "post") -> None:
    """Validate one real response against the schema the spec publishes for its path and status."""
    responses = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{path} answered {status}, which /docs.json does not document"
    schema = responses[status]["content"]["application/json"]["schema"]
    # The component references resolve against the spec itself, as a generated client resolves them.
    root = {**_strict(copy.deepcopy(schema)), "components": _strict(spec["components"])}
    errors = sorted(jsonschema.Draft202012Validator(root).iter_errors(response.json()), key=str)
    assert not errors, f"{path} {status}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def test_answers_validate_against_the_published_schema(
    spec: dict[str, Any], client: httpx.Client, server: Server
) -> None:
    ids = [f"c{i}" for i in range(N_CUSTOMERS)]
    for customer_id in ids:
        check(spec, "/v1/personalize", client.post("/v1/personalize", json={"customer_id": customer_id}))
    for path in ("/v1/churn", "/v1/cltv", "/v1/next-best-offer"):
        for customer_id in ids[:10]:
            check(spec, path, client.post(path, json={"customer_id": customer_id, "context": {"channel": "web"}}))
    cold = {"customer_id": "never-seen", "features": {"recency_days": 12, "tenure_days": 200}}
    check(spec, "/v1/personalize", client.post("/v1/personalize", json=cold))
    batch = client.post("/v1/personalize/batch", json={"customer_ids": [*ids[:20], "not-a-customer"]})
    assert batch.status_code == 200
    check(spec, "/v1/personalize/batch", batch)


def test_feedback_and_errors_validate_against_the_published_schema(
    spec: dict[str, Any], client: httpx.Client, anon: httpx.Client
) -> None:
    decision = client.post("/v1/personalize", json={"customer_id": "c3"}).json()["decision_id"]
    feedback = {"decision_id": decision, "outcome": "converted", "value": 3.5}
    check(spec, "/v1/feedback", client.post("/v1/feedback", json=feedback))
    check(spec, "/v1/feedback", client.post("/v1/feedback", json={**feedback, "decision_id": "0" * 32}))
    check(spec, "/v1/personalize", anon.post("/v1/personalize", json={"customer_id": "c1"}))
    check(spec, "/v1/personalize", client.post("/v1/personalize", json={"customer_id": "not-a-customer"}))
    check(spec, "/v1/personalize", client.post("/v1/personalize", json={"customer_id": 5, "extra": True}))
    check(
        spec, "/v1/churn", client.post("/v1/churn", content=b"{not json", headers={"content-type": "application/json"})
    )
    too_many = {"customer_ids": [f"c{i}" for i in range(1001)]}
    check(spec, "/v1/personalize/batch", client.post("/v1/personalize/batch", json=too_many))


def test_a_field_the_spec_does_not_name_fails_validation(spec: dict[str, Any], client: httpx.Client) -> None:
    """The check above could fail: an answer with an undocumented field, or a wrong type, does not validate."""
    response = client.post("/v1/personalize", json={"customer_id": "c1"})
    for change in ({"surprise": 1}, {"model_versions": "1"}):
        forged = httpx.Response(200, json={**response.json(), **change})
        with pytest.raises(AssertionError):
            check(spec, "/v1/personalize", forged)
