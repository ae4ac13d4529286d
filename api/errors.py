"""JSON errors: ``{"error": {"code", "message"}}`` with the right status."""

from __future__ import annotations

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from unity.schemas.api import ErrorBody, ErrorDetail

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = msgspec.json.encode(ErrorBody(ErrorDetail(code, message)))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def api_error_response(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, str(exc.detail), headers)


def internal_error_response(incident: str | None = None) -> Response:
    """A 500 naming the incident its log line carries, never the exception's text: that may
    hold internals a caller should not see."""
    where = f"incident {incident} in its log" if incident else "see its log"
    return error_response(500, "internal", f"the server failed to handle the request ({where})")


async def on_internal_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this response, so the server logs the traceback once.
    return internal_error_response()
