"""The API key check: an ASGI middleware in front of every route (``/mcp`` too) but the open ones.

The key is compared with :func:`hmac.compare_digest` (constant time in the key's content) and
never logged: a refused request is logged by path only, and uvicorn's access log never sees headers.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["OPEN_PATHS", "ApiKeyMiddleware", "extract_key", "key_matches"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

OPEN_PATHS = ("/health",)
"""Routes that answer without the key (besides ``/`` and ``/static/``, which only serve files)."""


def extract_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    for name, value in headers:
        lower = name.lower()
        if lower == b"x-api-key":
            return value.strip()
        if lower == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                return token.strip()
    return None


def key_matches(given: bytes | None, expected: bytes) -> bool:
    """Constant-time comparison (``hmac.compare_digest``); no key never matches."""
    return given is not None and hmac.compare_digest(given, expected)


OPEN_PREFIXES = ("/static/", "/static-offline-docs/")
"""Folders of plain files served without the key: the web page's, and the API docs' scripts (fastapi-offline)."""


def is_open(path: str) -> bool:
    """Paths served without the key: health, the web page and its static files, the API docs' scripts."""
    return path in OPEN_PATHS or path == "/" or path.startswith(OPEN_PREFIXES)


class ApiKeyMiddleware:
    """Refuse (401, JSON error) any HTTP request outside :func:`is_open` that lacks the key."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        if key_matches(extract_key(scope.get("headers") or []), self._key):
            await self.app(scope, receive, send)
            return
        logger.warning("refused a request to %s: no valid API key", scope.get("path", "?"))
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {
                "error": {
                    "type": "AuthError",
                    "message": "this server needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
