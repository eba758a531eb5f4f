"""The HTTP API of CONTRACT §4: a FastAPI app that the BentoML service mounts at ``/v1``, and ``/metrics``.

BentoML documents mounting an ASGI app on a service (``bentoml.mount_asgi_app``) and publishes a mounted FastAPI
app's routes in its OpenAPI spec (``GET /docs.json``), so the answers' and errors' schemas that spec shows are the
pydantic models of :mod:`serving.schemas` that this module declares. A route here:

* checks the bearer key (a FastAPI security dependency: 401 ``unauthorized``);
* reads the body, whatever its content type, up to :data:`MAX_BODY_BYTES` (413 ``payload_too_large``), and
  validates it with its pydantic model (400 ``invalid_json``, 422 ``invalid_request`` with pydantic's error list);
* hands it to the service (:class:`Backend`), and maps what the service raises to a status by exception class
  (:data:`ERRORS`): an unknown customer is a 404, invalid features a 422, a decision log that cannot be written
  a 503 with ``Retry-After``.

Every error is ``{"error": "...", "detail": ...}``; unknown routes under ``/v1`` answer a JSON 404, a wrong method
a JSON 405. BentoML's own HTTP metrics label requests with the raw path (a request to ``/nope-123`` would add series
forever), so the service turns them off (its documented ``metrics`` setting) and :data:`metrics_app` serves
``/metrics`` itself, with request series labelled by this API's routes only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Protocol, TypeVar

import bentoml
from fastapi import FastAPI, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from features.kinds import KINDS
from serving.decision_log import DecisionLogError, FeedbackReceipt
from serving.errors import (
    UNKNOWN_CUSTOMER,
    ApiError,
    BatchTooLarge,
    BodyTooLarge,
    Forbidden,
    InvalidFeatures,
    InvalidJson,
    InvalidRequest,
    LogUnavailable,
    RateLimited,
    StoreUnavailable,
    Unauthorized,
    UnknownCustomer,
    UnknownDecision,
)
from serving.keys import FEEDBACK, PUBLIC_PATHS, SCORE, ApiKey, RateLimiter
from serving.layout import ENDPOINTS, EVERY_MODEL
from serving.schemas import (
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

#: Where the API is mounted.
PREFIX = "/v1"
#: Largest request body accepted on ``/v1`` (bytes); 1,000 ids of 128 characters fit comfortably.
MAX_BODY_BYTES = 1_048_576
#: Seconds a client is asked to wait before retrying a 503.
RETRY_AFTER_SECONDS = 1
#: Requests a keep-alive connection serves before it is closed (:class:`ConnectionRecycler`): often enough that a
#: client's connections spread over the workers within a second at load (benchmarks/serving.py), rare enough that
#: reconnecting costs nothing measurable.
KEEPALIVE_REQUESTS = 100
#: Longest rejected input (as JSON) an error echoes back; a 1 MB context need not travel back to say it is too big.
MAX_ECHOED_INPUT = 200
#: The single-customer routes, by the endpoint name the service scores and logs them under (a kind's route is its
#: name with dashes).
SINGLE_ROUTES = {endpoint: "/" + endpoint.replace("_", "-") for endpoint in ENDPOINTS}
BATCH_ROUTE = "/personalize/batch"
FEEDBACK_ROUTE = "/feedback"
#: Every ``/v1`` route as the client sees it: the only paths the request series are labelled with.
ROUTES = frozenset(PREFIX + path for path in (*SINGLE_ROUTES.values(), BATCH_ROUTE, FEEDBACK_ROUTE))

M = TypeVar("M", bound=BaseModel)


class Backend(Protocol):
    """What the routes need from the service instance (``bentoml.get_current_service()``)."""

    def authenticate(self, header: str | None) -> ApiKey | None:
        """The accepted key an ``Authorization`` header carries, or None."""
        ...

    def admit(self, key: ApiKey) -> float:
        """Take one request from the key's rate limit: 0 when admitted, else the seconds to wait."""
        ...

    async def single(self, request: PersonalizeRequest, endpoint: str, key_name: str | None = None) -> Any:
        """The answer for one customer, once its decision is logged."""
        ...

    async def batch(self, customer_ids: list[str], key_name: str | None = None) -> list[Any]:
        """The answers for known customers in request order, once their decisions are logged."""
        ...

    async def feedback(self, request: FeedbackRequest) -> FeedbackReceipt:
        """Record feedback on a decision."""
        ...

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request of a ``/v1`` route."""
        ...

    def settling(self) -> bool:
        """Whether the worker swapped in new models moments ago (its connections then stay where they are)."""
        ...


# --- errors ------------------------------------------------------------------------------------------------


_RETRY = {"Retry-After": str(RETRY_AFTER_SECONDS)}
#: How HTTP says each error, by exception class: (status, error code, extra headers). The detail is the exception's.
ERRORS: dict[type[Exception], tuple[int, str, dict[str, str]]] = {
    InvalidJson: (400, "invalid_json", {}),
    Unauthorized: (401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="cxpredict"'}),
    Forbidden: (403, "forbidden", {}),
    UnknownCustomer: (404, UNKNOWN_CUSTOMER, {}),
    UnknownDecision: (404, "unknown_decision", {}),
    BodyTooLarge: (413, "payload_too_large", {}),
    BatchTooLarge: (413, "batch_too_large", {}),
    InvalidRequest: (422, "invalid_request", {}),
    InvalidFeatures: (422, "invalid_features", {}),
    RateLimited: (429, "rate_limited", {}),
    LogUnavailable: (503, "decision_log_unavailable", _RETRY),
    DecisionLogError: (503, "decision_log_unavailable", _RETRY),
    StoreUnavailable: (503, "online_store_unavailable", _RETRY),
}

#: Error codes of the statuses the framework itself answers (unknown route, wrong method, a bug).
_STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 500: "internal_error"}


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response; a non-finite number is a bug and fails loudly (no NaN in JSON)."""
    body = json.dumps(content, separators=(",", ":"), allow_nan=False, default=_jsonable).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):  # an answer part built as the published model
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def error_response(status: int, error: str, detail: Any, headers: dict[str, str] | None = None) -> Response:
    """The contract's error body ``{"error": ..., "detail": ...}``."""
    return json_response({"error": error, "detail": detail}, status, headers)


async def _mapped_error(_: Request, exc: Exception) -> Response:
    status, error, headers = next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)
    if status >= 500:
        log.error("%s: %r", error, exc)
    if isinstance(exc, RateLimited):
        headers = {**headers, "Retry-After": RateLimiter.retry_after(exc.wait)}
    detail = exc.detail if isinstance(exc, ApiError) else str(exc)
    return error_response(status, error, detail, headers or None)


async def _framework_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, _STATUS_CODES.get(exc.status_code, "error"), exc.detail, exc.headers)


async def _unexpected(_: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception once this answer is sent: the server logs its traceback.
    return error_response(500, "internal_error", "an unexpected error occurred; the server log has the details")


# --- requests ----------------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, refused once it is over ``limit`` bytes (declared or streamed).

    Raises:
        BodyTooLarge: the body is over the limit.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model: type[M], body: bytes) -> M:
    """``body`` validated as JSON against ``model`` (an empty body is ``{}``), whatever its content type.

    Raises:
        InvalidJson: the body is not JSON.
        InvalidRequest: the body is JSON but not valid for ``model``.
    """
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        # Through pydantic's own JSON: an input such as 1e999 comes back as the string "Infinity", valid JSON.
        try:
            raw = json.loads(exc.json(include_url=False, include_context=False), parse_constant=str)
        except ValueError:  # an input that is no text at all (undecodable bytes): errors without it
            raw = json.loads(exc.json(include_url=False, include_context=False, include_input=False))
        errors = [_without_long_input(e) for e in raw]
        if any(e.get("type") == "json_invalid" for e in errors):
            raise InvalidJson(errors) from None
        raise InvalidRequest(errors) from None


def _without_long_input(error: Any) -> Any:
    size = len(json.dumps(error.get("input"), default=str))
    if size <= MAX_ECHOED_INPUT:
        return error
    return {**error, "input": f"({size} characters as JSON, not echoed)"}


def _backend() -> Backend:
    return bentoml.get_current_service()  # type: ignore[no-any-return]


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="an API key from CXPREDICT_API_KEYS (or the demo key); /livez, /readyz, /metrics need none",
)


#: Where :class:`DenyByDefault` leaves the key it accepted for the route (a key of the ASGI scope).
KEY_SCOPE = "cxpredict.api_key"


def _require(scope: str) -> Callable[..., Awaitable[None]]:
    async def require_key(request: Request, _: Annotated[Any, Security(_bearer)]) -> None:
        """A route's security dependency: an accepted key (401) with the route's scope (403), within its rate (429)."""
        backend = _backend()
        key = request.scope.get(KEY_SCOPE) or backend.authenticate(request.headers.get("authorization"))
        if key is None:
            raise Unauthorized("send a valid API key as `Authorization: Bearer <key>`")
        if scope not in key.scopes:
            raise Forbidden(f"API key {key.name!r} lacks the {scope!r} scope this route needs")
        wait = backend.admit(key)
        if wait > 0:
            raise RateLimited(f"API key {key.name!r} is over its rate limit; retry after Retry-After seconds", wait)
        request.scope[KEY_SCOPE] = key

    return require_key


def key_name(request: Request) -> str | None:
    """The name of the key the request was admitted with."""
    key = request.scope.get(KEY_SCOPE)
    return key.name if key is not None else None


def _body_docs(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON body (the route reads and validates it itself)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    if "$defs" in schema:  # nested models would need components this route cannot declare
        raise TypeError(f"{model.__name__}: a request model must not nest models")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_ERROR_DOCS = {
    400: "`invalid_json`: the body is not JSON",
    401: "`unauthorized`: missing or wrong `Authorization: Bearer <key>`",
    403: "`forbidden`: the key lacks this route's scope (`score` or `feedback`)",
    404: "`unknown_customer` (an unknown id without `features`) or `unknown_decision` (feedback)",
    413: "`payload_too_large` (body over 1 MB) or `batch_too_large` (over 1,000 ids)",
    422: "`invalid_request` (wrong types, missing or extra fields; `detail` lists them) or `invalid_features`",
    429: "`rate_limited`: the key is over its rate limit; retry after `Retry-After` seconds",
    500: "`internal_error`: a bug; the server log has the details",
    503: "`decision_log_unavailable` or `online_store_unavailable`: retry after `Retry-After` seconds",
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in _ERROR_DOCS.items()
}


# --- the app -----------------------------------------------------------------------------------------------

api = FastAPI(
    title="cxpredict",
    description="Churn, CLTV and next-best-offer answers (CONTRACT §4).",
    openapi_url=None,  # BentoML publishes the spec at /docs.json
    docs_url=None,
    redoc_url=None,
    exception_handlers={
        HTTPException: _framework_error,
        Exception: _unexpected,
        **dict.fromkeys(ERRORS, _mapped_error),
    },
)


def _route(
    path: str, request_model: type[BaseModel], response_model: type[BaseModel], doc: str, scope: str = SCORE
) -> Any:
    return api.post(
        path,
        response_model=response_model,
        responses=_RESPONSES,
        openapi_extra=_body_docs(request_model),
        dependencies=[Security(_require(scope))],
        description=doc,
        operation_id=path.strip("/").replace("/", "_").replace("-", "_"),
    )


def _single_route(endpoint: str, path: str, doc: str) -> None:
    async def answer(request: Request) -> Response:
        body = parse(PersonalizeRequest, await read_body(request))
        return json_response(await _backend().single(body, endpoint, key_name(request)))

    answer.__name__ = endpoint
    _route(path, PersonalizeRequest, PersonalizeResponse, doc)(answer)


_single_route(EVERY_MODEL, SINGLE_ROUTES[EVERY_MODEL], "Churn risk, value and next best offer for one customer.")
for _kind in KINDS.values():
    _single_route(_kind.name, SINGLE_ROUTES[_kind.name], f"{_kind.about} for one customer.")


@_route(BATCH_ROUTE, BatchRequest, BatchResponse, "Answers for up to 1,000 known customers, in request order.")
async def personalize_batch(request: Request) -> Response:
    """Unknown ids get an error entry instead of failing the batch."""
    body = parse(BatchRequest, await read_body(request))
    if len(body.customer_ids) > MAX_BATCH:
        raise BatchTooLarge(
            f"{len(body.customer_ids)} customer_ids sent; at most {MAX_BATCH} per call — split the batch"
        )
    results = await _backend().batch(body.customer_ids, key_name(request))
    return json_response({"results": results, "count": len(results)})


@_route(
    FEEDBACK_ROUTE, FeedbackRequest, FeedbackResponse, "Record what happened after a decision; idempotent.", FEEDBACK
)
async def feedback(request: Request) -> Response:
    """The first record of a (decision, outcome) wins; a repeat says so."""
    body = parse(FeedbackRequest, await read_body(request))
    receipt = await _backend().feedback(body)
    if not receipt.known:
        raise UnknownDecision(f"decision_id {body.decision_id!r} was not issued by this service")
    return json_response(
        {
            "decision_id": body.decision_id,
            "outcome": body.outcome,
            "recorded": True,  # on record, by this request or an earlier one (idempotent)
            "duplicate": receipt.duplicate,
            "stored_value": receipt.value,
        }
    )


_POST_PATHS = frozenset(route[len(PREFIX) :] for route in ROUTES)


@api.api_route(
    "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False
)
async def not_found(path: str) -> Response:
    """Any other request under ``/v1``: a JSON 404, or 405 on a route's path with another method.

    BentoML hands the mounted app only requests one of its routes matches, so this route keeps every ``/v1``
    request, known path or not, in the API's JSON errors.
    """
    if f"/{path}" in _POST_PATHS:
        raise HTTPException(405, "this route takes POST", headers={"Allow": "POST"})
    raise HTTPException(404, f"no route {PREFIX}/{path}; see /docs.json")


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RouteMetrics:
    """ASGI middleware of :data:`api`: counts and times the requests to its routes, labelled by route.

    Only the paths in :data:`ROUTES` are labels; a request to any other path is answered but not counted, so no
    client can add series.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request, counting it if its path is a route."""
        route = scope.get("path")
        if scope["type"] != "http" or route not in ROUTES:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            _backend().observe(route, status, time.perf_counter() - start)


api.add_middleware(RouteMetrics)


class DenyByDefault:
    """ASGI middleware of the whole BentoML app: every path but :data:`serving.keys.PUBLIC_PATHS` needs a key.

    A route added later (to the mounted API, or by BentoML itself, such as ``/docs.json``) is therefore never public
    by accident. The accepted key travels in the ASGI scope to the route, which checks its scope and rate.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass public paths and requests with an accepted key; answer everything else a JSON 401."""
        if scope["type"] == "lifespan" or (scope["type"] == "http" and scope.get("path") in PUBLIC_PATHS):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        raw = headers.get(b"authorization")
        key = _backend().authenticate(raw.decode("latin-1") if raw is not None else None)
        if key is None:
            if scope["type"] != "http":  # a websocket: refused before it is accepted
                await send({"type": "websocket.close", "code": 1008})
                return
            status, error, extra = ERRORS[Unauthorized]
            response = error_response(status, error, "send a valid API key as `Authorization: Bearer <key>`", extra)
            await response(scope, receive, send)
            return
        scope[KEY_SCOPE] = key
        await self.app(scope, receive, send)


class ConnectionRecycler:
    """ASGI middleware of the whole BentoML app: close a keep-alive connection after ``limit`` requests.

    The worker processes share one listening socket, and a keep-alive connection stays with the worker that
    accepted it: a client that opens its connections at once often lands them all on one worker while the other
    idles (seen with ``hey -c 8`` against two workers: 8/0 and 5/3 splits). Closing a connection now and then
    (``Connection: close`` on its last response, as nginx's ``keepalive_requests`` does) makes the client reconnect,
    and the worker that is least busy is the first to accept, so the load spreads again within a second. While the
    worker has just swapped in new models (:meth:`Backend.settling`) it closes nothing: the other workers may still
    serve the old ones, and a client's connection should not step back a version.
    """

    #: Connections tracked at most; a client that drops connections early leaves entries behind.
    MAX_TRACKED = 4096

    def __init__(self, app: ASGIApp, limit: int = KEEPALIVE_REQUESTS) -> None:
        self.app = app
        self.limit = limit
        self._served: dict[tuple[str, int], int] = {}

    @staticmethod
    def _settling() -> bool:
        try:
            return _backend().settling()
        except Exception:  # no service (a bare app in a test): nothing to wait for
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request; the connection's ``limit``-th response asks the client to reconnect."""
        client = scope.get("client") if scope["type"] == "http" else None
        if not client:
            await self.app(scope, receive, send)
            return
        peer = (client[0], client[1])
        served = self._served.pop(peer, 0) + 1  # popped and re-added: the dict stays in least-recent order
        if served < self.limit or self._settling():
            self._served[peer] = served
            if len(self._served) > self.MAX_TRACKED:
                del self._served[next(iter(self._served))]
            await self.app(scope, receive, send)
            return

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)


# --- /metrics ----------------------------------------------------------------------------------------------


async def _metrics(_: Request) -> Response:
    """Prometheus text of every series of every worker (prometheus_client's multiprocess mode)."""
    import prometheus_client
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # set by BentoML for all its worker processes
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return Response(prometheus_client.generate_latest(registry), media_type=prometheus_client.CONTENT_TYPE_LATEST)


#: ``GET /metrics``, mounted at ``/`` (BentoML's own endpoint is off with its metrics, see the module docstring).
metrics_app = Starlette(routes=[Route("/metrics", _metrics, methods=["GET"])])
