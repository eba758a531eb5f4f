"""The HTTP API of CONTRACT §4 against a real server: answers, errors, auth, health, feedback."""

from __future__ import annotations

import json
import math
import re
import threading

import httpx
import pandas as pd
import pytest

from features.kinds import open_bundle, score_frame
from features.scoring import SMALL_BATCH
from tests.serving.conftest import API_KEY, N_CUSTOMERS, Server
from tests.serving.logged import read_decision

PARTS = ("churn", "cltv", "next_best_offer")


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def assert_error(response: httpx.Response, status: int | tuple[int, ...], error: str | None = None) -> dict:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) >= {"error", "detail"}, body
    if error is not None:
        assert body["error"] == error, body
    return body


def check_answer(body: dict, customer_id: str, parts: tuple[str, ...] = PARTS) -> None:
    assert body["customer_id"] == customer_id
    assert isinstance(body["decision_id"], str) and len(body["decision_id"]) == 32
    assert body["experiment"] is None
    assert set(body["model_versions"]) == set(parts)
    assert all(isinstance(v, int) for v in body["model_versions"].values())
    if "churn" in parts:
        churn = body["churn"]
        assert 0.0 <= churn["probability"] <= 1.0
        assert churn["risk_band"] in ("low", "medium", "high")
        assert isinstance(churn["reasons"], list)
        for reason in churn["reasons"]:
            assert isinstance(reason["feature"], str) and isinstance(reason["description"], str)
            # A category's label (attr_region) is a string; every other value a number or null.
            assert reason["value"] is None or _is_num(reason["value"]) or reason["feature"] == "attr_region"
            assert _is_num(reason["contribution"])
            assert (reason["contribution"] > 0) == (reason["direction"] == "up")
    if "cltv" in parts:
        cltv = body["cltv"]
        assert _is_num(cltv["predicted_spend"]) and cltv["predicted_spend"] >= 0
        assert _is_num(cltv["value"]) and cltv["value"] >= 0
        assert cltv["horizon_days"] == 90 and cltv["value_horizon_days"] == 365
        assert cltv["method"] == "model"
        # A cold start that sends no monetary_total has no known history: null, not a made-up 0.
        assert cltv["historic_value"] is None or _is_num(cltv["historic_value"])
        assert cltv["activity_method"] in ("bgnbd", "fallback")
        assert _is_num(cltv["p_alive"]) and 0.0 <= cltv["p_alive"] <= 1.0
        assert cltv["expected_orders"] is None or cltv["expected_orders"] >= 0.0
        assert all((d["contribution"] > 0) == (d["direction"] == "up") for d in cltv["drivers"])
    if "next_best_offer" in parts:
        nbo = body["next_best_offer"]
        if nbo["available"]:
            assert _is_num(nbo["expected_value"])
            assert nbo["method"] == "uplift"
            values = [r["expected_value"] for r in nbo["ranking"]]
            assert values and values == sorted(values, reverse=True)
            if values[0] > 0:
                assert nbo["offer_id"] in ("discount10", "loyalty")
                assert nbo["ranking"][0]["offer_id"] == nbo["offer_id"] and nbo["expected_value"] == values[0]
            else:  # no offer pays: show none, and say so
                assert nbo["offer_id"] is None and nbo["expected_value"] == 0.0 and nbo["reason"] == "no_positive_value"
        else:
            assert isinstance(nbo["detail"], str)
    for part in set(PARTS) - set(parts):
        assert part not in body


def assert_close(a: object, b: object, path: str = "") -> None:
    """Nested equality with a float tolerance (batch and single rows go through XGBoost separately)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), path
    else:
        assert a == b, path


def strip(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "decision_id"}


def test_personalize_has_every_contract_field(client: httpx.Client) -> None:
    r = client.post("/v1/personalize", json={"customer_id": "c1", "context": {"channel": "email"}})
    assert r.status_code == 200, r.text
    body = r.json()
    check_answer(body, "c1")
    assert body["as_of"].startswith("2024-04-01")
    assert body["churn"]["available"] and body["cltv"]["available"]


@pytest.mark.parametrize(
    ("route", "part"), [("/v1/churn", "churn"), ("/v1/cltv", "cltv"), ("/v1/next-best-offer", "next_best_offer")]
)
def test_part_endpoints(client: httpx.Client, route: str, part: str) -> None:
    r = client.post(route, json={"customer_id": "c2"})
    assert r.status_code == 200, r.text
    body = r.json()
    check_answer(body, "c2", (part,))
    full = client.post("/v1/personalize", json={"customer_id": "c2"}).json()
    assert body[part] == full[part]


def test_eligibility_rule_applies(client: httpx.Client, server: Server) -> None:
    for _, row in server.customers.head(20).iterrows():
        nbo = client.post("/v1/next-best-offer", json={"customer_id": row.customer_id}).json()["next_best_offer"]
        offered = {r["offer_id"] for r in nbo["ranking"]}
        assert ("loyalty" in offered) == (row.tenure_days >= 100)


def test_batch_equals_single_answers(client: httpx.Client) -> None:
    ids = ["c3", "c4", "nobody", "c3", "c10"]
    r = client.post("/v1/personalize/batch", json={"customer_ids": ids})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(ids)
    results = body["results"]
    assert [x["customer_id"] for x in results] == ids
    assert results[2]["error"] == "unknown_customer" and "features" in results[2]["detail"]
    assert results[0]["decision_id"] != results[3]["decision_id"]
    for cid, batch in zip(ids, results, strict=True):
        if cid == "nobody":
            continue
        single = client.post("/v1/personalize", json={"customer_id": cid}).json()
        assert_close(strip(batch), strip(single))


def test_single_answers_equal_large_batch_answers_in_every_bit(client: httpx.Client) -> None:
    """A lone request's few rows are predicted by the numpy forest (features/forest.py), a batch of many customers
    by XGBoost's C call: the answers must be identical, not merely close."""
    ids = [f"c{i}" for i in range(12)]
    assert len(ids) > SMALL_BATCH
    batch = client.post("/v1/personalize/batch", json={"customer_ids": ids}).json()["results"]
    for cid, answer in zip(ids, batch, strict=True):
        single = client.post("/v1/personalize", json={"customer_id": cid}).json()
        assert strip(single) == strip(answer), cid


def _coalesced(anon: httpx.Client) -> tuple[int, int]:
    """(requests, scoring calls) of ``/v1/personalize`` so far, from the service's metrics."""
    text = anon.get("/metrics").text
    requests = re.search(r'cxpredict_coalesced_requests_total\{endpoint="personalize"\} (\d+)', text)
    calls = re.search(r'cxpredict_coalesced_calls_total\{endpoint="personalize"\} (\d+)', text)
    assert requests and calls, text[-2000:]
    return int(requests.group(1)), int(calls.group(1))


def test_concurrent_requests_each_get_their_own_answer(
    client: httpx.Client, anon: httpx.Client, server: Server
) -> None:
    """Requests that arrive together are scored together; each still gets (and logs) exactly its own answer."""
    from serving.decision_log import SQLiteDecisionLog

    bodies = [{"customer_id": f"c{i % 12}", "context": {"channel": f"ch{i}"}} for i in range(16)] + [
        {"customer_id": "c3", "features": {"recency_days": 900.0}, "context": {"channel": "override"}},
        {"customer_id": "newcomer", "features": {"recency_days": 5.0, "tenure_days": 40}},
        {"customer_id": "nobody"},
    ]
    expected = [client.post("/v1/personalize", json=b) for b in bodies]
    before = _coalesced(anon)
    got: list[httpx.Response | None] = [None] * len(bodies)

    def fire(i: int, start: threading.Barrier) -> None:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as c:
            c.get("/livez")  # connect before the barrier, so that the requests really arrive together
            start.wait()
            got[i] = c.post("/v1/personalize", json=bodies[i])

    for _ in range(5):  # until one round was actually scored together (nearly always the first)
        start = threading.Barrier(len(bodies))
        threads = [threading.Thread(target=fire, args=(i, start)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for body, want, response in zip(bodies, expected, got, strict=True):
            assert response is not None and response.status_code == want.status_code, body
            if want.status_code != 200:
                assert response.json()["error"] == want.json()["error"] == "unknown_customer"
                continue
            assert strip(response.json()) == strip(want.json()), body
        requests, calls = (a - b for a, b in zip(_coalesced(anon), before, strict=True))
        if calls < requests:
            break
    assert calls < requests, f"no two of {requests} concurrent requests were scored in one call"
    log = SQLiteDecisionLog(server.home / "decisions.sqlite")
    try:
        for body, response in zip(bodies, got, strict=True):
            if response is not None and response.status_code == 200:
                stored = read_decision(log, response.json()["decision_id"])
                assert stored is not None
                assert stored["customer_id"] == body["customer_id"]
                assert stored["context"] == body.get("context", {})
    finally:
        log.close()


def test_cold_start_with_features(client: httpx.Client) -> None:
    features = {"recency_days": 200.0, "frequency_total": 1, "tenure_days": 300, "attr_region": "north"}
    r = client.post("/v1/personalize", json={"customer_id": "brand-new", "features": features})
    assert r.status_code == 200, r.text
    body = r.json()
    check_answer(body, "brand-new")
    assert body["as_of"] is None
    assert "loyalty" in {o["offer_id"] for o in body["next_best_offer"]["ranking"]}


def test_overrides_change_the_answer(client: httpx.Client) -> None:
    base = client.post("/v1/churn", json={"customer_id": "c5"}).json()["churn"]["probability"]
    changed = {
        client.post("/v1/churn", json={"customer_id": "c5", "features": {"recency_days": v}}).json()["churn"][
            "probability"
        ]
        for v in (0.0, 500.0)
    }
    assert changed != {base}
    assert len(changed) == 2


def test_unknown_customer_is_404(client: httpx.Client) -> None:
    body = assert_error(client.post("/v1/personalize", json={"customer_id": "nobody"}), 404, "unknown_customer")
    assert "nobody" in body["detail"] and "features" in body["detail"]
    # An empty `features` object was sent: the answer must not ask for features as if none had been.
    body = assert_error(
        client.post("/v1/churn", json={"customer_id": "nobody", "features": {}}), 404, "unknown_customer"
    )
    assert "`features` is empty" in body["detail"] and "at least one" in body["detail"]


def test_bad_features_are_422(client: httpx.Client) -> None:
    body = assert_error(
        client.post("/v1/personalize", json={"customer_id": "c1", "features": {"no_such_feature": 1}}), 422
    )
    assert "no_such_feature" in body["detail"]
    assert_error(client.post("/v1/personalize", json={"customer_id": "c1", "features": {"recency_days": "x"}}), 422)
    for customer_id in ("c1", "cold-start"):
        r = client.post("/v1/personalize", json={"customer_id": customer_id, "features": {"recency_days": True}})
        assert "recency_days" in assert_error(r, 422, "invalid_features")["detail"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("1e999", "Input should be a finite number"), ("[1]", "Input should be a number, a string or null")],
)
def test_a_bad_feature_value_is_one_error_under_its_name(client: httpx.Client, value: str, message: str) -> None:
    body = f'{{"customer_id": "c1", "features": {{"recency_days": {value}}}}}'
    r = client.post("/v1/personalize", content=body, headers={"Content-Type": "application/json"})
    detail = assert_error(r, 422, "invalid_request")["detail"]
    assert [(e["loc"], e["msg"]) for e in detail] == [(["features", "recency_days"], message)]


@pytest.mark.parametrize(
    "context", [{f"k{i}": i for i in range(51)}, {"blob": "x" * 5000}, {"nested": [{"a": "y" * 100}] * 50}]
)
def test_context_is_bounded(client: httpx.Client, server: Server, context: dict) -> None:
    r = client.post("/v1/personalize", json={"customer_id": "c1", "context": context})
    detail = assert_error(r, 422, "invalid_request")["detail"]
    assert [e["loc"] for e in detail] == [["context"]] and "context" in detail[0]["msg"]
    assert len(r.content) < 1000  # the rejected context is not echoed back
    limit = {f"k{i}": "v" * 60 for i in range(50)}  # 50 keys, under 4 KB: accepted
    assert client.post("/v1/personalize", json={"customer_id": "c1", "context": limit}).status_code == 200
    accented = {"note": "é" * 1500}  # 3 KB as UTF-8, as the log stores it (9 KB if measured as \u escapes)
    assert client.post("/v1/personalize", json={"customer_id": "c1", "context": accented}).status_code == 200


@pytest.mark.parametrize("route", ["/v1/personalize", "/v1/churn", "/v1/personalize/batch", "/v1/feedback"])
@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", "test-key", "Basic dGVzdC1rZXk=", "Bearer test-key-2", "bearer"]
)
def test_auth_required(anon: httpx.Client, route: str, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    r = anon.post(route, json={"customer_id": "c1"}, headers=headers)
    body = assert_error(r, 401, "unauthorized")
    assert "Bearer" in body["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("content", "route"),
    [
        (b"{not json", "/v1/personalize"),
        (b"", "/v1/personalize"),
        (b"[1, 2]", "/v1/personalize"),
        (b'"c1"', "/v1/personalize"),
        (b"{}", "/v1/personalize"),
        (b'{"customer_id": 12}', "/v1/personalize"),
        (b'{"customer_id": ""}', "/v1/personalize"),
        (b'{"customer_id": "' + b"x" * 200 + b'"}', "/v1/personalize"),
        (b'{"customer_id": "c1", "context": "email"}', "/v1/personalize"),
        (b'{"customer_id": "c1", "features": [1]}', "/v1/personalize"),
        (b'{"customer_id": "c1", "features": {"recency_days": NaN}}', "/v1/personalize"),
        (b'{"customer_id": "c1", "extra": 1}', "/v1/personalize"),
        (b'{"customer_ids": []}', "/v1/personalize/batch"),
        (b'{"customer_ids": "c1"}', "/v1/personalize/batch"),
        (b'{"customer_ids": [1, 2]}', "/v1/personalize/batch"),
        (b'{"decision_id": "x"}', "/v1/feedback"),
        (b'{"decision_id": "x", "outcome": "converted", "value": "lots"}', "/v1/feedback"),
        (b"\xff\xfe", "/v1/feedback"),
    ],
)
def test_bad_requests_are_4xx_json(client: httpx.Client, content: bytes, route: str) -> None:
    r = client.post(route, content=content, headers={"Content-Type": "application/json"})
    body = assert_error(r, (400, 422))
    if r.status_code == 400:
        assert body["error"] == "invalid_json"
    else:
        assert body["error"] in ("invalid_request", "invalid_features")
    if body["error"] != "invalid_features":
        assert isinstance(body["detail"], list) and all("loc" in e and "msg" in e for e in body["detail"])


def test_every_body_is_read_as_json(client: httpx.Client) -> None:
    body = b'{"customer_id": "c1"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-8"):
        r = client.post("/v1/churn", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 200, (content_type, r.text)
    for content_type in ("application/vnd.bentoml+pickle", "multipart/form-data; boundary=x"):
        r = client.post("/v1/churn", content=b"\x80\x04junk", headers={"Content-Type": content_type})
        assert_error(r, 400)


def test_batch_over_limit(client: httpx.Client) -> None:
    r = client.post("/v1/personalize/batch", json={"customer_ids": [f"c{i}" for i in range(1001)]})
    body = assert_error(r, 413, "batch_too_large")
    assert "1000" in body["detail"]
    ok = client.post("/v1/personalize/batch", json={"customer_ids": [f"c{i % N_CUSTOMERS}" for i in range(1000)]})
    assert ok.status_code == 200 and ok.json()["count"] == 1000


def test_body_too_large(client: httpx.Client) -> None:
    big = json.dumps({"customer_id": "c1", "context": {"blob": "x" * 2_000_000}}).encode()
    assert_error(client.post("/v1/personalize", content=big), 413, "payload_too_large")

    def chunks():  # no Content-Length: the limit must hold while streaming too
        for _ in range(40):
            yield b" " * 65536

    r = client.post("/v1/personalize", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_unknown_route_and_method_are_json(client: httpx.Client) -> None:
    assert_error(client.post("/v1/nope", json={}), 404, "not_found")
    assert_error(client.get("/v1/personalize"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_auth(anon: httpx.Client, path: str) -> None:
    r = anon.get(path)
    assert r.status_code == 200, r.text
    if path == "/metrics":
        assert 'cxpredict_model_version{model="churn"}' in r.text
        assert "# TYPE" in r.text


def test_feedback(client: httpx.Client) -> None:
    decision = client.post("/v1/personalize", json={"customer_id": "c6"}).json()["decision_id"]
    payload = {"decision_id": decision, "outcome": "converted", "value": 12.5}
    first = client.post("/v1/feedback", json=payload)
    assert first.status_code == 200, first.text
    ack = {"decision_id": decision, "outcome": "converted"}
    assert first.json() == {**ack, "recorded": True, "duplicate": False, "stored_value": 12.5}
    # The first record wins, and a repeat says so: with another value, the client sees its value was discarded.
    again = client.post("/v1/feedback", json={**payload, "value": 99.0})
    assert again.status_code == 200
    assert again.json() == {**ack, "recorded": True, "duplicate": True, "stored_value": 12.5}
    other = client.post("/v1/feedback", json={"decision_id": decision, "outcome": "clicked"})
    assert other.status_code == 200 and other.json()["recorded"] is True
    assert_error(client.post("/v1/feedback", json={**payload, "decision_id": "f" * 32}), 404, "unknown_decision")


@pytest.mark.parametrize("value", [1.7e308, -2e12, "1e999", "true", '"12.5"'])
def test_feedback_values_are_bounded(client: httpx.Client, value: float | str) -> None:
    decision = client.post("/v1/personalize", json={"customer_id": "c7"}).json()["decision_id"]
    body = f'{{"decision_id": "{decision}", "outcome": "converted", "value": {value}}}'
    r = client.post("/v1/feedback", content=body, headers={"Content-Type": "application/json"})
    detail = assert_error(r, 422, "invalid_request")["detail"]
    assert [e["loc"] for e in detail] == [["value"]], detail
    ok = client.post("/v1/feedback", json={"decision_id": decision, "outcome": "converted", "value": 1e12})
    assert ok.status_code == 200 and ok.json()["recorded"] is True


def test_decisions_are_logged(client: httpx.Client, server: Server) -> None:
    from serving.decision_log import SQLiteDecisionLog

    body = client.post("/v1/personalize", json={"customer_id": "c7", "context": {"channel": "sms"}}).json()
    client.post("/v1/feedback", json={"decision_id": body["decision_id"], "outcome": "converted", "value": 3.0})
    client.post("/v1/feedback", json={"decision_id": body["decision_id"], "outcome": "converted", "value": 9.0})
    log = SQLiteDecisionLog(server.home / "decisions.sqlite")
    try:
        stored = read_decision(log, body["decision_id"])
    finally:
        log.close()
    assert stored is not None
    assert stored["customer_id"] == "c7" and stored["context"] == {"channel": "sms"}
    assert stored["model_versions"] == body["model_versions"]
    assert stored["outputs"]["churn"]["probability"] == body["churn"]["probability"]
    assert [(f["outcome"], f["value"]) for f in stored["feedback"]] == [("converted", 3.0)]


def test_service_equals_batch_scoring(client: httpx.Client, server: Server) -> None:
    """No training/serving skew: the API answers what ``score_frame`` computes on the same stored rows."""
    manifest = json.loads((server.home / "serving.json").read_text())
    ids = server.customers["customer_id"].tolist()
    answers = client.post("/v1/personalize/batch", json={"customer_ids": ids}).json()["results"]
    assert all(a["model_versions"] == {k: v["version"] for k, v in manifest.items()} for a in answers)
    from features.online_store import SQLiteOnlineStore

    rows = SQLiteOnlineStore(server.home / "online").get_many(ids)
    frame = pd.DataFrame([rows[i] for i in ids])
    churn = score_frame(open_bundle(manifest["churn"]["path"]), frame)
    cltv = score_frame(open_bundle(manifest["cltv"]["path"]), frame, churn.churn_probability.to_numpy())
    nbo = score_frame(open_bundle(manifest["next_best_offer"]["path"]), frame)
    expected = pd.concat([churn, cltv, nbo], axis=1)
    for answer, (_, row) in zip(answers, expected.iterrows(), strict=True):
        assert answer["churn"]["probability"] == pytest.approx(row.churn_probability, rel=1e-6, abs=1e-9)
        assert answer["cltv"]["predicted_spend"] == pytest.approx(row.predicted_spend, rel=1e-6, abs=1e-9)
        assert answer["cltv"]["value"] == pytest.approx(row.cltv, rel=1e-6, abs=1e-9)
        for key in ("historic_value", "p_alive", "expected_orders"):
            if pd.isna(row[key]):  # JSON's null for what batch scoring leaves NaN (a missing value)
                assert answer["cltv"][key] is None
            else:
                assert answer["cltv"][key] == pytest.approx(row[key], rel=1e-6, abs=1e-9)
        assert answer["cltv"]["activity_method"] == row.cltv_activity_method
        nbo = answer["next_best_offer"]
        if pd.isna(row.next_best_offer_value):  # nothing eligible
            assert nbo["available"] is False and pd.isna(row.next_best_offer)
        elif pd.isna(row.next_best_offer):  # eligible offers, none pays: both show none
            assert nbo["offer_id"] is None and nbo["expected_value"] == row.next_best_offer_value == 0.0
        else:
            assert nbo["offer_id"] == row.next_best_offer
            assert nbo["expected_value"] == pytest.approx(row.next_best_offer_value, rel=1e-6)


def test_openapi_documents_the_api(anon: httpx.Client, client: httpx.Client) -> None:
    assert_error(anon.get("/docs.json"), 401, "unauthorized")  # default-deny: only health and metrics are public
    spec = client.get("/docs.json").json()
    for path in ("/v1/personalize", "/v1/churn", "/v1/cltv", "/v1/next-best-offer", "/v1/personalize/batch"):
        assert path in spec["paths"]
    schemas = json.dumps(spec["components"]["schemas"])
    assert '"example"' in schemas
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    assert set(spec["components"]["schemas"]["ErrorResponse"]["properties"]) == {"error", "detail"}
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            assert "security" not in json.dumps(item)
            continue
        operation = item["post"]
        assert operation["security"] == [{"bearer": []}]
        for status in ("401", "403", "404", "413", "422", "429", "503"):
            assert operation["responses"][status]["content"] == error, (path, status)
    feedback = spec["paths"]["/v1/feedback"]["post"]["responses"]["200"]
    assert "FeedbackResponse" in json.dumps(feedback)


def test_unknown_paths_leave_no_trace_in_metrics(anon: httpx.Client, client: httpx.Client) -> None:
    for path in ("/nope-123", "/v1/nope-456"):
        assert_error(anon.get(path), 401, "unauthorized")  # default-deny, unknown paths included
        client.post(path, json={})
    client.post("/v1/churn", json={"customer_id": "c1"})
    text = anon.get("/metrics").text
    assert "nope-123" not in text and "nope-456" not in text
    assert 'cxpredict_http_requests_total{route="/v1/churn",status="200"}' in text


@pytest.mark.parametrize(
    "features",
    [
        {"recency_days": 1e308},
        {"recency_days": -1e308, "tenure_days": 1e39},
        {"recency_days": True},
        {"recency_days": None, "tenure_days": None},
        {"attr_region": 5},
        {"attr_region": "nowhere"},
        {"recency_days": {"nested": 1}},
        {"recency_days": "12"},
    ],
)
def test_odd_feature_values_never_500(client: httpx.Client, features: dict) -> None:
    for customer_id in ("c1", "cold-start"):
        r = client.post("/v1/personalize", json={"customer_id": customer_id, "features": features})
        assert r.status_code in (200, 400, 422), r.text
        assert "Traceback" not in r.text
        if r.status_code == 200:
            check_answer(r.json(), customer_id)


def test_keepalive_connections_are_recycled(server: Server) -> None:
    """A connection is closed after the server's per-connection limit (and sooner when its port reuses a count)."""
    from serving.http import KEEPALIVE_REQUESTS

    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
        answers = [c.post("/v1/churn", json={"customer_id": "c1"}) for _ in range(2 * KEEPALIVE_REQUESTS)]
    assert all(r.status_code == 200 for r in answers)
    closes = [i for i, r in enumerate(answers) if r.headers.get("connection") == "close"]
    assert closes and closes[0] < KEEPALIVE_REQUESTS and len(closes) >= 2, closes
