"""The MCP tools over streamable HTTP: the SDK's endpoint app (1.x or 2.x) and a request-body bound.

Used by :func:`sap_rag.serve.mcp_tools.mount_mcp`, which adds the endpoint to the server's app.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["BodyLimit", "streamable_http_app"]


def streamable_http_app(server: Any, path: str, allowed_hosts: Sequence[str] | None) -> Any:
    """The SDK's Starlette app serving ``server`` at ``path``, with its Host/Origin check set explicitly.

    The SDK turns on DNS-rebinding protection for loopback hosts only when it is told the host; here
    the app decides: ``allowed_hosts`` (e.g. ``["127.0.0.1:*", "localhost:*"]``) turns it on for those
    Host headers, None leaves Host checking to the surrounding app (a reverse proxy's Host must pass).
    """
    from mcp.server.transport_security import TransportSecuritySettings

    if allowed_hosts is None:
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    else:
        hosts = list(allowed_hosts)
        origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        )
    if type(server).__name__ == "FastMCP":  # mcp 1.x: settings on the server, not arguments
        server.settings.streamable_http_path = path
        server.settings.transport_security = security
        return server.streamable_http_app()
    return server.streamable_http_app(streamable_http_path=path, transport_security=security)


class BodyLimit:
    """ASGI wrapper: a request body over ``max_bytes`` is answered 413 (JSON error) before ``app`` sees it.

    Bodies are read up to the limit and replayed to ``app``; requests without a body (the GET event
    stream, DELETE) pass straight through.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        body = bytearray()
        too_big = declared.isdigit() and int(declared) > self.max_bytes
        while not too_big:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            too_big = len(body) > self.max_bytes
            if not message.get("more_body", False):
                break
        if too_big:
            text = f"the MCP request body is over {self.max_bytes:,} bytes, the most this server takes"
            data = json.dumps({"error": {"type": "LimitExceededError", "message": text}}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
