"""Host and Origin checks in front of every route: DNS rebinding and cross-site requests.

*DNS rebinding*: a web page on ``evil.example`` can make its name resolve to ``127.0.0.1`` and then
read a server on this machine with the page's own origin; the request still carries
``Host: evil.example``. A server without an API key therefore answers only requests whose ``Host``
is a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``, any port). With a key, the operator lists
the names the server is reached by (``--allowed-host``; default: any, since the key already stops a
foreign page, which cannot know it).

*Cross-site requests*: a browser sends ``Origin`` with every POST/PUT/PATCH/DELETE a page makes; a form
or ``fetch`` on another site could otherwise upload or delete without reading the answer. Such a
request is refused (403) unless its ``Origin`` is the server's own (the request's ``Host``, under
``http`` or ``https``, so a TLS-terminating proxy that keeps ``Host`` works). Requests without an
``Origin`` (the Python client, curl, agents) are not browsers' cross-site requests and pass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

__all__ = ["LOOPBACK_NAMES", "HostOriginMiddleware", "host_allowed", "normalise_host", "same_origin"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""Host names a server without an API key answers to (with any port)."""

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def split_host(value: str) -> tuple[str, str]:
    """A ``Host`` header (or allowed-host entry) as (lower-case name, port or ``""``).

    >>> split_host("LocalHost:8000"), split_host("[::1]:80"), split_host("[::1]"), split_host("example.org")
    (('localhost', '8000'), ('[::1]', '80'), ('[::1]', ''), ('example.org', ''))
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        return name + "]", rest[1:] if rest.startswith(":") else ""
    name, _, port = value.partition(":")
    return name, port


def normalise_host(value: str, scheme: str = "http") -> str:
    """``name[:port]`` without the scheme's default port, lower case (``Example.org:80`` -> ``example.org``)."""
    name, port = split_host(value)
    return name if not port or port == _DEFAULT_PORTS.get(scheme) else f"{name}:{port}"


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Whether a ``Host`` header matches an entry of ``allowed``.

    An entry is ``name`` (any port), ``name:port`` (that port only) or ``*.domain`` (any sub-domain,
    any port); ``*`` allows every host.

    >>> host_allowed("127.0.0.1:8000", LOOPBACK_NAMES), host_allowed("evil.example:8000", LOOPBACK_NAMES)
    (True, False)
    >>> host_allowed("api.example.org", ["*.example.org"]), host_allowed("example.org:81", ["example.org:80"])
    (True, False)
    """
    if not host:
        return False
    name, port = split_host(host)
    if not name or any(ch in name for ch in "/@ \t"):
        return False
    for entry in allowed:
        if entry == "*":
            return True
        want_name, want_port = split_host(entry)
        if want_port and want_port != port:
            continue
        if want_name.startswith("*."):
            if name.endswith(want_name[1:]) and len(name) > len(want_name) - 1:
                return True
        elif name == want_name:
            return True
    return False


def same_origin(origin: str, host: str | None) -> bool:
    """Whether a browser's ``Origin`` names the server the request reached (its ``Host``), under http or https.

    >>> same_origin("http://127.0.0.1:8000", "127.0.0.1:8000"), same_origin("https://ex.org", "ex.org")
    (True, True)
    >>> same_origin("http://evil.example", "127.0.0.1:8000"), same_origin("null", "127.0.0.1:8000")
    (False, False)
    """
    if not host:
        return False
    parts = urlsplit(origin.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or parts.path or "@" in parts.netloc:
        return False
    return normalise_host(parts.netloc, parts.scheme) == normalise_host(host, parts.scheme)


class HostOriginMiddleware:
    """Refuse requests whose ``Host`` is not allowed (400) and cross-site unsafe requests (403), as JSON errors.

    Args:
        app: the ASGI app behind it.
        allowed_hosts: ``Host`` names accepted (see :func:`host_allowed`); None accepts any.
    """

    def __init__(self, app: Any, *, allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else tuple(allowed_hosts)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        host = _header(headers, b"host")
        if self.allowed_hosts is not None and not host_allowed(host, self.allowed_hosts):
            logger.warning("refused a request to %s: Host %r is not allowed", scope.get("path", "?"), host)
            hint = (
                "this server answers only to 127.0.0.1, localhost and [::1] (it has no API key)"
                if self.allowed_hosts == LOOPBACK_NAMES
                else "this server's --allowed-host list does not name it"
            )
            await _refuse(scope, send, 400, "HostNotAllowedError", f"Host {host or '(none)'!r} refused: {hint}")
            return
        origin = _header(headers, b"origin")
        method = "WEBSOCKET" if scope["type"] == "websocket" else scope.get("method", "")
        if origin is not None and (method in UNSAFE_METHODS or method == "WEBSOCKET") and not same_origin(origin, host):
            logger.warning("refused a cross-site %s %s from %r", method, scope.get("path", "?"), origin)
            message = f"cross-site request refused: Origin {origin!r} is not this server's own ({host or 'no Host'})"
            await _refuse(scope, send, 403, "CrossSiteRequestError", message)
            return
        await self.app(scope, receive, send)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _refuse(scope: Any, send: Any, status: int, kind: str, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
