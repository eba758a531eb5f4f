"""ApiGuard's fast path in isolation: a crashing handler is a JSON 500, an invalid body reaches the framework intact.

The real server's behaviour (valid bodies answered by the fast path, every error case) is in test_api.py; a handler
that crashes cannot be provoked there, so this drives the middleware directly with a stand-in service. It runs in
a subprocess because importing ``serving.service`` changes process-wide settings (scikit-learn marked absent,
``OMP_NUM_THREADS``) that the rest of the test session must not inherit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json
from serving import service

class Runtime:
    def check_key(self, header):
        return header == "Bearer k"

seen_in_flight = []

async def crash(request):
    seen_in_flight.append(service._service.in_flight)
    raise RuntimeError("secret internals")

class Stub:
    runtime = Runtime()
    handlers = {name: crash for _, name in service.ROUTES.values()}
    in_flight = 0

service._service = Stub()
reached = []

async def framework(scope, receive, send):
    reached.append((await receive())["body"].decode())
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"teapot", "more_body": False})

async def call(body):
    sent = []
    chunks = [{"type": "http.request", "body": body[:5], "more_body": True},
              {"type": "http.request", "body": body[5:], "more_body": False}]
    async def receive():
        return chunks.pop(0)
    async def send(message):
        sent.append(message)
    headers = [(b"authorization", b"Bearer k"), (b"content-type", b"application/json")]
    scope = {"type": "http", "method": "POST", "path": "/v1/personalize", "headers": headers}
    await service.ApiGuard(framework)(scope, receive, send)
    return {"status": sent[0]["status"], "body": json.loads(b"".join(m.get("body", b"") for m in sent[1:]))}

out = {"crash": asyncio.run(call(b'{"customer_id": "c1"}')), "invalid": asyncio.run(call(b'{"customer_id": 5}'))}
out["reached"] = reached
out["in_flight"] = {"during": seen_in_flight, "after": service._service.in_flight}
print(json.dumps(out))
"""


def test_crash_is_json_500_and_invalid_bodies_reach_the_framework() -> None:
    env = {"BENTOML_DO_NOT_TRACK": "true", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    crash = out["crash"]
    assert crash["status"] == 500
    assert crash["body"]["error"] == "internal_error"
    assert "secret internals" not in json.dumps(crash["body"]) and "Traceback" not in json.dumps(crash["body"])
    assert "secret internals" in run.stderr  # logged for the operator
    # The handler ran counted as the one request in flight (a lone request is scored on the event loop), and the
    # count went back down although it crashed; the invalid body was never counted.
    assert out["in_flight"] == {"during": [1], "after": 0}
    # An invalid body is not the fast path's to answer: the framework gets it whole (and its error is normalised).
    assert out["reached"] == ['{"customer_id": 5}']
    assert out["invalid"]["status"] == 418 and out["invalid"]["body"]["error"] == "error"
