"""Every error the API returns, in one JSON shape (OpenAI's), whatever raised it.

    {"error": {"message": "pose[1]: not valid base64 (...)", "type": "invalid_request_error",
               "code": "invalid_base64", "param": "pose[1]"}}
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

log = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          422: "invalid_request_error", 500: "server_error", 503: "overloaded_error", 504: "timeout_error"}


class ApiError(Exception):
    """An HTTP error with a message that names the problem (and the offending field, as ``param``)."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "invalid_request_error"),
                          "code": self.code, "param": self.param}}

    def body_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()

    def response(self) -> "Response":
        from starlette.responses import Response

        return Response(self.body_bytes(), status_code=self.status, headers=self.headers,
                        media_type="application/json")


def bad_request(message: str, code: str = "invalid_request", param: str | None = None) -> ApiError:
    return ApiError(400, message, code, param)


def unprocessable(message: str, code: str, param: str | None = None) -> ApiError:
    return ApiError(422, message, code, param)


def overloaded(message: str, retry_after_s: int) -> ApiError:
    return ApiError(503, message, "overloaded", headers={"Retry-After": str(retry_after_s)})


def install_handlers(app: "FastAPI") -> None:
    """Render ``ApiError``, Starlette's HTTP errors (404, 405) and anything unexpected as JSON errors."""
    from starlette.exceptions import HTTPException

    async def on_api_error(_: "Request", exc: Exception) -> "Response":
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_http_error(_: "Request", exc: Exception) -> "Response":
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, str(exc.detail), code, headers=dict(exc.headers or {})).response()

    async def on_unexpected(request: "Request", exc: Exception) -> "Response":
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return ApiError(500, f"internal error ({type(exc).__name__}); the server logged the details",
                        "internal_error").response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
