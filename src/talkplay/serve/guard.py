"""Access control and request hygiene: API key, audio signatures, body size, JSON errors.

Every error leaves as ``{"error": code, "detail": message}`` with a 4xx/5xx status, including
FastAPI's validation errors (422, or 400 for a body that is not JSON) and unknown routes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

bearer = HTTPBearer(auto_error=False, description="The server's API key (when it has one).")
key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Same as Bearer.")
session_header = APIKeyHeader(name="X-Session-Token", auto_error=False,
                              description="The client token returned when the session was made.")


class ApiError(StarletteHTTPException):
    """An HTTP error with a machine-readable code."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None):
        super().__init__(status, detail, headers)
        self.code = code


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media",
          422: "invalid_request", 503: "busy"}


def key_matches(expected: str, credentials: HTTPAuthorizationCredentials | None,
                header_key: str | None) -> bool:
    """Whether the request carries ``expected`` as Bearer token or X-API-Key (constant time)."""
    given = header_key if header_key is not None else (credentials.credentials if credentials else None)
    return given is not None and secrets.compare_digest(expected.encode(), given.encode())


class AudioSigner:
    """HMAC signatures that let an <audio> element (which cannot send headers) fetch one track."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)  # per server process: links die with it

    def sign(self, track_id: str) -> str:
        return hmac.new(self._secret, track_id.encode(), hashlib.sha256).hexdigest()[:32]

    def check(self, track_id: str, sig: str | None) -> bool:
        return sig is not None and hmac.compare_digest(self.sign(track_id), sig)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as ``{"error", "detail"}`` JSON."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or _CODES.get(exc.status_code, "error")
        return JSONResponse({"error": code, "detail": str(exc.detail)}, exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": "malformed_json",
                                 "detail": "the request body is not valid JSON"}, 400)
        parts = []
        for e in errors[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(parts)}, 422)


class _TooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, "body_too_large", f"the request body exceeds {limit} bytes")


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` by Content-Length or by streamed size.

    A declared length over the limit is refused before the body is read; a chunked body is
    counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(scope, receive, send, 400, "bad_request", "invalid Content-Length")
                return
            if int(declared) > self.max_bytes:
                exc = _TooLarge(self.max_bytes)
                await _reply(scope, receive, send, 413, exc.code, str(exc.detail))
                return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)  # FastAPI re-raises HTTP errors as they are
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge as exc:
            if started:
                raise
            await _reply(scope, receive, send, 413, exc.code, str(exc.detail))


async def _reply(scope: Scope, receive: Receive, send: Send, status: int, code: str,
                 detail: str) -> None:
    # Connection: close, since the unread rest of the body cannot be left in the stream.
    response = JSONResponse({"error": code, "detail": detail}, status,
                            headers={"Connection": "close"})
    await response(scope, receive, send)
