"""ASGI middlewares of the API: request metrics, the bearer token, and the body size limit.

Paths are taken relative to the app's mount point (Serve's ``route_prefix``), so ``/health`` (and the page)
are exempt from the token wherever the app is mounted.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from signclip.api.errors import ApiError
from signclip.api.prometheus import ServiceMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def relative_path(scope: Scope) -> str:
    """The request path below the app's root path."""
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


async def _send_error(send: Send, error: ApiError) -> None:
    body = error.body_bytes()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Counts every answer by method, route and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: frozenset[str]):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = relative_path(scope)
        route = path if path in self.routes else "other"  # bounded label values
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe_request(scope.get("method", "?"), route, status, time.perf_counter() - started)


PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/"})  # nothing in them is the service's to guard
PUBLIC_PREFIXES = ("/static/",)  # the page's scripts


class BearerTokenMiddleware:
    """Requires ``Authorization: Bearer <token>`` on every path except the public ones."""

    def __init__(self, app: ASGIApp, token: str, exempt: frozenset[str] = PUBLIC_PATHS,
                 exempt_prefixes: tuple[str, ...] = PUBLIC_PREFIXES):
        self.app, self.token, self.exempt, self.prefixes = app, token.encode(), exempt, exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = relative_path(scope) if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in self.exempt or path.startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization") or b""
        scheme, _, credentials = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(), self.token):
            message = "missing bearer token" if not given else "invalid bearer token"
            await _send_error(send, ApiError(401, f"{message}: send 'Authorization: Bearer <token>'",
                                             "unauthorized", headers={"WWW-Authenticate": "Bearer"}))
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Answers 413 for a body over the limit of its path, announced (Content-Length) or streamed."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]):
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(relative_path(scope))
        too_large = ApiError(413, f"the request body is larger than the limit of {limit} bytes for this route",
                             "body_too_large")
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_error(send, ApiError(400, "invalid Content-Length header", "invalid_header"))
                return
            if size > limit:
                await _send_error(send, too_large)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large  # rendered as JSON by the app's ApiError handler
            return message

        await self.app(scope, limited_receive, send)
