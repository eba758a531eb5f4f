"""serving.http.ConnectionRecycler: a keep-alive connection is closed after its limit of requests."""

from __future__ import annotations

import asyncio
from typing import Any

from serving.http import ConnectionRecycler


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _request(app: ConnectionRecycler, client: tuple[str, int] | None, kind: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(app({"type": kind, "client": client, "path": "/v1/x"}, receive, send))
    return sent


def _closes(sent: list[dict[str, Any]]) -> bool:
    return (b"connection", b"close") in sent[0]["headers"]


def test_every_limit_th_response_of_a_connection_asks_to_close() -> None:
    app = ConnectionRecycler(_ok, limit=3)
    closes = [_closes(_request(app, ("127.0.0.1", 5000))) for _ in range(7)]
    assert closes == [False, False, True, False, False, True, False]


def test_connections_are_counted_apart_and_the_body_is_untouched() -> None:
    app = ConnectionRecycler(_ok, limit=2)
    assert not _closes(_request(app, ("127.0.0.1", 1)))
    assert not _closes(_request(app, ("127.0.0.1", 2)))  # another port is another connection
    sent = _request(app, ("127.0.0.1", 1))
    assert _closes(sent)
    assert sent[0]["headers"][0] == (b"content-type", b"text/plain") and sent[1]["body"] == b"ok"


def test_requests_without_a_peer_pass_untouched_and_tracking_is_bounded() -> None:
    app = ConnectionRecycler(_ok, limit=1)
    assert not _closes(_request(app, None))  # a unix socket has no client address
    small = ConnectionRecycler(_ok, limit=5)
    small.MAX_TRACKED = 10
    for port in range(50):
        _request(small, ("127.0.0.1", port))
    assert len(small._served) <= 10


def test_no_connection_is_closed_while_the_worker_settles_on_new_models(monkeypatch) -> None:
    """Just after a reload the other workers may still serve the old models: connections stay, closing resumes after."""
    settling = [True]
    monkeypatch.setattr(ConnectionRecycler, "_settling", staticmethod(lambda: settling[0]))
    app = ConnectionRecycler(_ok, limit=2)
    peer = ("127.0.0.1", 7000)
    assert [_closes(_request(app, peer)) for _ in range(5)] == [False] * 5
    settling[0] = False
    assert _closes(_request(app, peer))  # over its limit: closed at the first chance
    assert not _closes(_request(app, peer))
