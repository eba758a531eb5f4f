"""The BentoML service: CONTRACT §4's HTTP API over :class:`serving.runtime.Runtime`.

Run it with ``cxpredict serve`` (which resolves the champions and writes the manifest first) or directly with
``bentoml serve serving.service:CxPredict`` once ``$CXPREDICT_HOME/serving.json`` exists.

How the contract's status codes are produced:

* every ``/v1`` request first passes :class:`ApiGuard`, a plain ASGI middleware (``add_asgi_middleware``): it
  answers 401 for a missing or wrong bearer key and 413 for a body over :data:`MAX_BODY_BYTES` (checked on
  ``Content-Length`` and while reading a chunked body), reads every body as JSON whatever its content type, and
  turns the framework's plain-text errors on ``/v1`` paths (unknown route 404, wrong method 405) into JSON;
* a ``POST`` whose body is valid for its route is answered by the middleware itself, with the same handler the
  ``@bentoml.api`` method calls (the fast path, :func:`parse_route`). BentoML's outer middlewares (request
  metrics, concurrency limit, timeout) still see it; its router, request context and endpoint wrapper, about
  a third of the event loop's time per request, are skipped. Everything else (invalid bodies, other methods,
  unknown routes) takes BentoML's full pipeline;
* BentoML validates each body against its pydantic model and answers 400 with pydantic's error list; the
  middleware renames that to 400 ``invalid_json`` (body is not JSON) or 422 ``invalid_request`` (wrong types,
  missing or extra fields), keeping the list as ``detail`` (see :func:`normalize_error`);
* the endpoints return a Starlette response themselves: 200 with the answer, or ``{"error", "detail"}`` with the
  status of a :class:`serving.runtime.ServingError` (404 unknown customer, 413 batch too large, 422 bad features).

``/livez``, ``/readyz`` and ``/metrics`` are BentoML's own (no auth); ``/metrics`` also shows the ``cxpredict_*``
series of :mod:`serving.metrics`, summed or merged over all worker processes.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

# xgboost imports scikit-learn when it is installed, and scikit-learn imports pandas: about 1 s and tens of MB
# of heap the worker never uses (and that each full GC then walks). Marking scikit-learn as absent before the
# first xgboost import keeps both out; the worker only uses raw Boosters.
if "sklearn" not in sys.modules:
    sys.modules["sklearn"] = None  # type: ignore[assignment]
# The worker parallelises across requests, not inside one row. Without this, every DMatrix (SHAP reasons) spins
# up an OpenMP team over all cores: 4-16 ms per churn answer instead of 0.4 ms on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import bentoml  # noqa: E402
from starlette.responses import Response  # noqa: E402

from features.settings import load_settings  # noqa: E402
from serving.coalesce import Coalescer  # noqa: E402
from serving.metrics import ServiceMetrics  # noqa: E402
from serving.runtime import MODELS, Item, Runtime, ServingError  # noqa: E402
from serving.schemas import (  # noqa: E402
    MAX_BATCH,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    PersonalizeRequest,
    PersonalizeResponse,
)

log = logging.getLogger("cxpredict.serving")

#: Largest request body accepted on ``/v1`` (bytes); 1,000 ids of 128 characters fit comfortably.
MAX_BODY_BYTES = 1_048_576
RELOAD_POLL_SECONDS = 1.0
#: How long a thread may hold the GIL while another waits for it (Python's default is 0.005).
GIL_SWITCH_SECONDS = 0.0005
#: The single-customer endpoints and the models each one answers with.
_SINGLE_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "personalize": MODELS,
    "churn": ("churn",),
    "cltv": ("cltv",),
    "next_best_offer": ("next_best_offer",),
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A handler of one ``/v1`` route: the validated request in, the finished response out.
Handler = Callable[[Any], Awaitable[Response]]

#: The worker's service instance, set once it is built (the middleware is created before it).
_service: CxPredict | None = None


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response (no NaN: a non-finite number is a bug and fails loudly)."""
    body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> Response:
    """The contract's error body ``{"error": ..., "detail": ...}``."""
    return json_response({"error": error, "detail": detail}, status, headers)


async def _send_error(send: Send, status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _after_logging(logged: Future[None], response: Response) -> Response:
    """``response`` once its decisions are durable; a 503 if the log failed (the answer was never acknowledged)."""
    try:
        if logged.done():  # committed on this thread already (a lone request): no trip through the loop's wake-up pipe
            logged.result()
        else:
            await asyncio.wrap_future(logged)
    except Exception as exc:
        log.error("decision log write failed: %r", exc)
        return error_response(503, "decision_log_unavailable", "the decision could not be logged; retry the request")
    return response


def parse_route(method: str, path: str, body: bytes) -> tuple[str, BaseModel] | None:
    """The endpoint and validated request for a ``POST`` to a ``/v1`` route, or None if the body is not valid for it.

    Validation is BentoML's own: the route's input model from ``CxPredict.apis`` and its JSON codec's call
    (``model_validate_json``, an empty body read as ``{}``), so a request the fast path answers is one the
    ``@bentoml.api`` method would have accepted. None leaves the request, and its error answer, to BentoML's
    pipeline.

    Args:
        method: The HTTP method.
        path: The request path.
        body: The whole request body.

    Returns:
        ``(endpoint name, request model instance)``, or None.
    """
    found = ROUTES.get(path) if method == "POST" else None
    if found is None:
        return None
    model, endpoint = found
    try:
        return endpoint, model.model_validate_json(body or b"{}")
    except ValueError:  # pydantic's ValidationError, invalid JSON included
        return None


class ApiGuard:
    """ASGI middleware for ``/v1``: bearer-key auth, body-size limit, content type, JSON for framework errors.

    It also answers every valid ``POST`` itself (the fast path, see the module docstring and :func:`parse_route`).

    Args:
        app: The wrapped application.
        max_body: Largest accepted body in bytes.
    """

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Guard one ``/v1`` request; everything else passes through untouched (the OpenAPI spec gets completed)."""
        path = scope.get("path", "")
        if scope["type"] == "http" and path == OPENAPI_PATH:
            await self.app(
                scope, receive, _HeldResponse(send, lambda start: start["status"] == 200, _send_completed_spec)
            )
            return
        if scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        service = _service
        if service is None:
            await _send_error(send, 503, "starting", "the service is still loading its models")
            return
        if not service.runtime.check_key(headers.get("authorization")):
            await _send_error(
                send,
                401,
                "unauthorized",
                "send a valid API key as `Authorization: Bearer <key>`",
                {"WWW-Authenticate": 'Bearer realm="cxpredict"'},
            )
            return
        if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            # The API speaks only JSON: `curl -d '{...}'` (form content type) or text/plain bodies are read as JSON,
            # and BentoML's other codecs (pickle, multipart) are never reached from outside.
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            await _send_error(send, 413, "payload_too_large", f"the body is over the {self.max_body}-byte limit")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, 413, "payload_too_large", f"the body is over the {self.max_body}-byte limit")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        parsed = parse_route(scope.get("method", ""), path, body)
        if parsed is not None:
            endpoint, request = parsed
            service.in_flight += 1
            try:
                response = await service.handlers[endpoint](request)
            except Exception:  # what BentoML's endpoint wrapper would answer, in the contract's shape
                log.exception("%s %s failed", scope.get("method"), path)
                response = error_response(500, "internal_error", _UNEXPECTED)
            finally:
                service.in_flight -= 1
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, _HeldResponse(send, lambda start: start["status"] >= 400, _send_contract_error))


#: BentoML's own words for an exception in an endpoint; the fast path answers the same.
_UNEXPECTED = "An unexpected error has occurred, please check the server log."

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


#: Longest rejected input (as JSON) an error echoes back; a 1 MB context need not travel back to say it is too big.
MAX_ECHOED_INPUT = 200


def _without_long_input(error: Any) -> Any:
    if not isinstance(error, dict) or "input" not in error:
        return error
    size = len(json.dumps(error["input"], default=str))
    if size <= MAX_ECHOED_INPUT:
        return error
    return {**error, "input": f"({size} characters as JSON, not echoed)"}


def normalize_error(status: int, body: bytes) -> tuple[int, str, Any]:
    """The contract's ``(status, error, detail)`` for an error response produced by BentoML or Starlette.

    * our own ``{"error": "snake_case", "detail": ...}`` bodies are kept;
    * BentoML's pydantic failure (400, ``"N validation error for X"``) becomes 400 ``invalid_json`` when the body
      is not JSON at all, else 422 ``invalid_request``, with the pydantic error list as detail;
    * anything else (router 404/405 text, a 500 without detail) gets a code from its status.
    """
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        error, detail = data["error"], data.get("detail")
        if " " not in error and "detail" in data:
            return status, error, detail
        if status == 400 and "validation error" in error and isinstance(detail, list):
            detail = [_without_long_input(e) for e in detail]
            if any(isinstance(e, dict) and e.get("type") == "json_invalid" for e in detail):
                return 400, "invalid_json", detail
            return 422, "invalid_request", detail
        return status, _STATUS_CODES.get(status, "error"), error
    if isinstance(data, list) and data and isinstance(data[0], dict) and "error" in data[0]:
        return status, _STATUS_CODES.get(status, "error"), data[0]["error"]
    return status, _STATUS_CODES.get(status, "error"), text[:500] or None


OPENAPI_PATH = "/docs.json"
#: The error answers of every ``/v1`` endpoint, documented with the contract's body.
_ERROR_DOCS = {
    400: "`invalid_json`: the body is not JSON",
    401: "`unauthorized`: missing or wrong `Authorization: Bearer <key>`",
    404: "`unknown_customer` (an unknown id without `features`) or `unknown_decision` (feedback)",
    413: "`payload_too_large` (body over 1 MB) or `batch_too_large` (over 1,000 ids)",
    422: "`invalid_request` (wrong types, missing or extra fields; `detail` lists them) or `invalid_features`",
    500: "`internal_error`: a bug; the server log has the details",
}


def document_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI spec completed with what the middleware adds: bearer auth and the real error answers.

    BentoML builds the spec itself (no hook for security schemes or per-route responses), and documents its own
    error bodies; :class:`ApiGuard` answers those statuses with ``{"error", "detail"}`` instead.
    """
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from CXPREDICT_API_KEYS (or the demo key); /livez, /readyz, /metrics need none",
    }
    schemas = components.setdefault("schemas", {})
    schemas["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, item in (spec.get("paths") or {}).items():
        if not path.startswith("/v1/") or not isinstance(item, dict):
            continue
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["security"] = [{"bearer": []}]
            responses = operation["responses"]
            for status in list(responses):
                if str(status) != "200":  # BentoML's own error bodies: never what /v1 answers
                    del responses[status]
            for status, description in _ERROR_DOCS.items():
                responses[str(status)] = {"description": description, "content": body}
    return spec


class _HeldResponse:
    """Wraps ``send``: a response whose start ``hold`` accepts is buffered whole and handed to ``finish`` instead."""

    def __init__(
        self,
        send: Send,
        hold: Callable[[Message], bool],
        finish: Callable[[Send, Message, bytes], Awaitable[None]],
    ) -> None:
        self.send = send
        self.hold = hold
        self.finish = finish
        self.start: Message | None = None
        self.body: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.hold(message):
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body.append(message.get("body", b""))
        if not message.get("more_body", False):
            await self.finish(self.send, self.start, b"".join(self.body))


async def _send_completed_spec(send: Send, start: Message, body: bytes) -> None:
    """The spec BentoML answered for ``GET /docs.json``, completed by :func:`document_spec`."""
    try:
        body = json.dumps(document_spec(json.loads(body))).encode()
    except (ValueError, TypeError, AttributeError):  # not the spec we know: pass it on unchanged
        log.warning("could not complete the OpenAPI spec; serving BentoML's as is")
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_contract_error(send: Send, start: Message, body: bytes) -> None:
    """An error answered by BentoML or Starlette on ``/v1``, in the contract's JSON shape."""
    status, error, detail = normalize_error(int(start["status"]), body)
    keep = (b"allow", b"www-authenticate", b"retry-after")
    extra = {k.decode(): v.decode() for k, v in start.get("headers", []) if k.lower() in keep}
    await _send_error(send, status, error, detail, extra)


@bentoml.service(
    name="cxpredict",
    traffic={"timeout": 10, "concurrency": 64},
    logging={"access": {"enabled": False}},
    # Per-request OpenTelemetry spans cost about a quarter of the framework's time per request (an ad hoc profile
    # of the first serving round); /v1 answers are traced in the decision log instead.
    tracing={"excluded_urls": ["/v1/"]},
    workers=1,
)
class CxPredict:
    """Churn, CLTV and next-best-offer answers for one customer at a time (or up to 1,000 in a batch)."""

    def __init__(self) -> None:
        global _service
        self.runtime = Runtime(load_settings())
        self.metrics = ServiceMetrics(_SINGLE_ENDPOINTS)
        self.metrics.publish(self.runtime)
        #: Requests the fast path is handling right now (the event loop's thread alone updates it).
        self.in_flight = 0
        # One scoring thread: XGBoost releases the GIL, so scoring overlaps the event loop's HTTP work. A request
        # alone in the worker is scored on the event loop instead: the loop has nothing else to do meanwhile, and
        # the hand-off there and back cost more than it saved (+17-35% req/s at 1 connection, ad hoc A/B runs).
        self._scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpredict-score")
        self._coalescers = {
            endpoint: Coalescer(
                functools.partial(self._decide, parts=parts, endpoint=endpoint),
                executor=self._scorer,
                inline=self._alone,
            )
            for endpoint, parts in _SINGLE_ENDPOINTS.items()
        }
        #: Endpoint name -> handler: what both the fast path and the ``@bentoml.api`` methods call.
        self.handlers: dict[str, Handler] = {
            **{name: functools.partial(self._one, endpoint=name) for name in _SINGLE_ENDPOINTS},
            "personalize_batch": self._batch,
            "feedback": self._feedback,
        }
        if set(self.handlers) != {name for _, name in ROUTES.values()}:
            raise RuntimeError(f"the fast path's handlers {sorted(self.handlers)} do not match the /v1 endpoints")
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="cxpredict-reload", daemon=True)
        self._watcher.start()
        log.info("cxpredict serving %s (pid %d)", self.runtime.status(), os.getpid())
        # Everything loaded so far lives as long as the worker: keep it out of every future GC pass.
        gc.collect()
        gc.freeze()
        # The scoring thread runs Python between its XGBoost calls; the event loop should not wait the default
        # 5 ms for the GIL each time it has a request to read or answer (a small gain at 8 connections, measured ad
        # hoc: see docs/benchmarks.md).
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        _service = self

    def _alone(self, batch: int) -> bool:
        """Whether a scoring call of ``batch`` items is the only work in the worker (then it runs on the loop)."""
        return batch == 1 and self.in_flight == 1

    def _watch(self) -> None:
        while not self._stop.wait(RELOAD_POLL_SECONDS):
            try:
                self.runtime.maybe_reload()
            except Exception:  # never let the watcher die
                log.exception("model reload check failed")
            try:
                # Counters and gauges reach /metrics within a second (scoring batches are counted at once).
                self.metrics.publish(self.runtime)
            except Exception:
                log.exception("publishing metrics failed")

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self._scorer.shutdown(wait=True)
        close = getattr(self.runtime.decisions, "close", None)
        if close is not None:
            close()

    def __is_ready__(self) -> bool:
        """Ready once the runtime holds at least one model (always, after a successful start)."""
        return bool(self.runtime.models.bundles)

    def _decide(
        self, items: list[Item], parts: tuple[str, ...], endpoint: str
    ) -> list[tuple[dict[str, Any], Future[None]]]:
        # Alone, this runs on the event loop (see _alone), which may as well commit the decision itself.
        answers, logged = self.runtime.decide(items, parts, endpoint)
        self.metrics.batch(endpoint, len(items))
        return [(answer, logged) for answer in answers]

    async def _one(self, request: PersonalizeRequest, endpoint: str) -> Response:
        try:
            item = self.runtime.prepare(request.customer_id, request.context, request.features)
        except ServingError as exc:
            return error_response(exc.status, exc.error, exc.detail)
        # Requests that arrive while the scoring thread is busy are scored together next (see serving.coalesce).
        answer, logged = await self._coalescers[endpoint].submit(item)
        return await _after_logging(logged, json_response(answer))

    @bentoml.api(route="/v1/personalize", output_spec=PersonalizeResponse)
    async def personalize(self, request: PersonalizeRequest, /) -> Response:
        """Churn risk, value and next best offer for one customer, in one call."""
        return await self._one(request, "personalize")

    @bentoml.api(route="/v1/churn", output_spec=PersonalizeResponse)
    async def churn(self, request: PersonalizeRequest, /) -> Response:
        """Churn probability, risk band and reasons for one customer."""
        return await self._one(request, "churn")

    @bentoml.api(route="/v1/cltv", output_spec=PersonalizeResponse)
    async def cltv(self, request: PersonalizeRequest, /) -> Response:
        """Predicted spend over the horizon and value over the CLTV horizon for one customer."""
        return await self._one(request, "cltv")

    @bentoml.api(route="/v1/next-best-offer", output_spec=PersonalizeResponse)
    async def next_best_offer(self, request: PersonalizeRequest, /) -> Response:
        """The eligible offer with the highest expected incremental value, with the full ranking."""
        return await self._one(request, "next_best_offer")

    @bentoml.api(route="/v1/personalize/batch", output_spec=BatchResponse)
    async def personalize_batch(self, request: BatchRequest, /) -> Response:
        """Answers for up to 1,000 known customers (stored features only), in request order."""
        return await self._batch(request)

    @bentoml.api(route="/v1/feedback", output_spec=FeedbackResponse)
    async def feedback(self, request: FeedbackRequest, /) -> Response:
        """Record what happened after a decision; sending the same outcome again changes nothing."""
        return await self._feedback(request)

    async def _batch(self, request: BatchRequest) -> Response:
        if len(request.customer_ids) > MAX_BATCH:
            return error_response(
                413,
                "batch_too_large",
                f"{len(request.customer_ids)} customer_ids sent; at most {MAX_BATCH} per call — split the batch",
            )
        # On the scoring thread: a thousand ids take a while, and the event loop keeps serving meanwhile.
        loop = asyncio.get_running_loop()
        results, logged = await loop.run_in_executor(self._scorer, self.runtime.decide_many, request.customer_ids)
        return await _after_logging(logged, json_response({"results": results, "count": len(results)}))

    async def _feedback(self, request: FeedbackRequest) -> Response:
        # The log's writer thread does the (short) write; waiting for it off the event loop keeps other requests going.
        receipt = await asyncio.to_thread(self.runtime.feedback, request.decision_id, request.outcome, request.value)
        if not receipt.known:
            return error_response(
                404, "unknown_decision", f"decision_id {request.decision_id!r} was not issued by this service"
            )
        return json_response(
            {
                "decision_id": request.decision_id,
                "outcome": request.outcome,
                "recorded": True,  # on record, by this request or an earlier one (idempotent)
                "duplicate": receipt.duplicate,
                "stored_value": receipt.value,
            }
        )


CxPredict.add_asgi_middleware(ApiGuard, max_body=MAX_BODY_BYTES)

#: ``/v1`` route -> (BentoML's input model for it, endpoint name), from the ``@bentoml.api`` methods above.
ROUTES: dict[str, tuple[type[BaseModel], str]] = {
    api.route: (api.input_spec, name) for name, api in CxPredict.apis.items() if api.route.startswith("/v1/")
}
