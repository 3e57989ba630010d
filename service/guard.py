"""What the service refuses before it reads a request's body (an ASGI middleware).

BentoML reads and validates the whole body before an API runs, so a 1 GB POST filled the worker's
memory before its 400, and /compress told anyone its schema before asking for the token. Here:
a body over its path's limit is a 413 (by Content-Length; a POST to an API without one is a 411), a POST
to an API that is not JSON is a 415, and /compress without the bearer token is a 401, each a JSON
body ``{"error", "field"}``. BentoML's own validation errors (a 400 with ``detail``) get the same
``field``, so that every 4xx has one shape.
"""

from __future__ import annotations

import hmac
import json
import os

JSON_APIS = ("/predict", "/compress")
BODY_LIMITS = {"/predict": 1 << 20, "/compress": 64 << 10}  # bytes; other paths: 64 KiB
DEFAULT_LIMIT = 64 << 10
TOKEN_REFUSED = "missing or wrong token: send Authorization: Bearer <UKD_JOB_TOKEN>"


def bearer_token_ok(header: str | None, token: str) -> bool:
    """Whether an Authorization header is ``Bearer <token>`` (constant-time compare)."""
    scheme, _, given = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


class RequestGuard:
    """ASGI middleware: answers 411/413/415/401 from the headers alone, and /readyz with 503
    while the server drains (``drain_file`` exists), else passes through."""

    def __init__(self, app, job_token: str | None = None, drain_file: str | None = None):
        self.app, self.job_token, self.drain_file = app, job_token, drain_file

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] == "http" and scope["path"] == "/readyz" and self.drain_file
                and os.path.exists(self.drain_file)):
            await self._answer(send, 503, "draining: the server is stopping", None)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            refusal = self.refusal(scope["path"].rstrip("/") or "/", dict(scope["headers"]))
            if refusal is not None:
                await self._answer(send, *refusal)
                return
        await self.app(scope, receive, with_error_field(send) if scope["type"] == "http" else send)

    def refusal(self, path: str, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        length = headers.get(b"content-length", b"")
        if path in JSON_APIS and not length.isdigit():
            return 411, "send the body with a Content-Length header", "content-length"
        limit = BODY_LIMITS.get(path, DEFAULT_LIMIT)
        if int(length or 0) > limit:
            return 413, f"the body is over {limit:,} bytes", "body"
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if path in JSON_APIS and content_type != b"application/json":
            return 415, "send JSON with Content-Type: application/json", "content-type"
        if path == "/compress" and self.job_token is not None and not bearer_token_ok(
                headers.get(b"authorization", b"").decode("latin-1"), self.job_token):
            return 401, TOKEN_REFUSED, "authorization"
        return None

    @staticmethod
    async def _answer(send, status: int, message: str, field: str | None) -> None:
        body = json.dumps({"error": message, "field": field}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def with_error_field(send):
    """``send``, except that a 4xx JSON body without ``field`` gets one: the first location
    of its ``detail`` (pydantic's validation errors), or null."""
    start, chunks = None, []

    async def wrapped(message: dict) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = _add_field(b"".join(chunks))
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _add_field(body: bytes) -> bytes:
    try:
        error = json.loads(body)
    except ValueError:
        return body
    if not isinstance(error, dict) or "field" in error:
        return body
    locations = [d.get("loc") for d in error.get("detail") or [] if isinstance(d, dict)]
    field = next((str(loc[0]) for loc in locations if loc), None)
    message = error.get("error") or error.get("detail") or "bad request"
    return json.dumps({**error, "error": message, "field": field}).encode()
