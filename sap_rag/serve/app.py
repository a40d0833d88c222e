"""``create_app``: the FastAPI application (HTTP API, OpenAPI docs, web page, MCP) around one index.

Mount it in your own ASGI app or run it with ``sap-rag serve``. Every error is JSON,
``{"error": {"type": ..., "message": ...}}`` with a 4xx/5xx status; a traceback only reaches the
server log. Route handlers are plain functions, so FastAPI runs them in its thread pool and a slow
search never blocks the event loop; uploads stream into a private folder on the loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import InvalidInputError, SapRagError
from .auth import ApiKeyMiddleware
from .config import ServeConfig
from .errors import LimitExceededError, error_body, one_line
from .routes import api_router
from .security import HostOriginMiddleware
from .service import IndexService
from .uploads import remove_stale_uploads

logger = logging.getLogger(__name__)

__all__ = ["WEB_DIR", "create_app", "hit_json"]

WEB_DIR = Path(__file__).parent / "web"
"""The web page's static files (``index.html`` and what it loads)."""

MAX_JSON_BYTES = 1024 * 1024
"""Largest request body that is not an upload (JSON): a 2,000-character query fits many times over."""


def hit_json(hit: Any, root: str = "", snippet: int | None = None) -> dict[str, Any]:
    """A ``SearchHit`` as the API's JSON (``text`` cut to ``snippet`` characters when given)."""
    text = hit.text
    if snippet is not None and len(text) > snippet:
        text = text[:snippet].rstrip() + "…"
    pid = quote(hit.page_id, safe="")
    return {
        "page_id": hit.page_id,
        "doc_id": hit.doc_id,
        "page_number": hit.page_number,
        "score": hit.score,
        "relevance": hit.relevance,
        "text": text,
        "metadata": hit.metadata,
        "point_id": hit.point_id,
        "num_query_tokens": hit.num_query_tokens,
        "has_image": hit.image_path is not None,
        "image_url": f"{root}/pages/{pid}/image" if hit.image_path is not None else None,
        "overlay_url": f"{root}/pages/{pid}/overlay.png" if hit.image_path is not None else None,
    }


def create_app(
    index: Any,
    *,
    encoder: Any = None,
    config: ServeConfig | None = None,
    mcp: bool = True,
) -> Any:
    """The server's ASGI app over ``index`` (an open ``SAPIndex``, or the path of one to open).

    Args:
        index: an open, writable ``SAPIndex`` (a read-only one serves searches; uploads then fail
            with 409), or an index directory, opened here and closed when the app shuts down.
        encoder: the encoder (default: the index's own, loaded once).
        config: limits, API key, batching (default ``ServeConfig()``).
        mcp: mount the MCP tools at ``/mcp`` (needs the ``mcp`` package and ``sap_rag.serve.mcp_tools``).

    The app's ``state.service`` is the :class:`IndexService`; ``state.lifespan_hooks`` is a list of
    ``() -> async context manager`` entered while the app runs (the MCP session manager uses it).
    """
    config = config or ServeConfig()
    owns = isinstance(index, (str, os.PathLike))
    if owns:
        from ..index import SAPIndex

        index = SAPIndex.open(index, encoder=encoder)
    service = IndexService(index, encoder=encoder, config=config, owns_index=owns)
    remove_stale_uploads()  # what a server killed mid-upload left in the temporary folder
    hooks: list[Callable[[], Any]] = []

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any):
        async with contextlib.AsyncExitStack() as stack:
            for hook in list(hooks):
                await stack.enter_async_context(hook())
            try:
                yield
            finally:
                from starlette.concurrency import run_in_threadpool

                await run_in_threadpool(service.close)

    from .. import __version__

    app = _fastapi_class()(
        title="sap-rag",
        version=__version__,
        description="Visual-document retrieval with Structural Anchor Pruning: search pages by text or image, "
        "read pages and their images, upload PDFs and images. Errors are "
        '`{"error": {"type": ..., "message": ...}}`.',
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.lifespan_hooks = hooks
    app.state.config = config
    _install_errors(app)
    app.include_router(api_router())
    _mount_web(app)
    if mcp:
        _mount_mcp(app, service)
    app.add_middleware(BodyLimitMiddleware, max_json_bytes=MAX_JSON_BYTES)
    if config.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=config.api_key)
    # Outermost: a forged Host or a cross-site POST is refused before anything else reads the request.
    app.add_middleware(HostOriginMiddleware, allowed_hosts=config.host_check())
    return app


def _fastapi_class() -> Callable[..., Any]:
    """``FastAPIOffline`` when the ``fastapi-offline`` package is there (``/docs`` and ``/redoc`` then load
    their scripts from this server, so they work offline), else ``FastAPI`` (whose pages load them from a CDN)."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        from fastapi import FastAPI

        logger.info("/docs and /redoc load Swagger UI and ReDoc from a CDN: pip install fastapi-offline to serve them")
        return FastAPI
    return FastAPIOffline


def _install_errors(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(SapRagError)
    async def package_error(request: Any, exc: SapRagError) -> JSONResponse:
        status, body = error_body(exc)
        # The index's messages name its directory; a client has no use for the server's paths.
        where = str(getattr(request.app.state.service.index, "path", "") or "")
        if where:
            message = body["error"]["message"].replace(f" at {where}", "").replace(f" {where}", " the index")
            body["error"]["message"] = message.replace(where, "the index")
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Any, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        message = one_line(f"{where}: {first.get('msg', 'invalid')}")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return JSONResponse({"error": {"type": "InvalidInputError", "message": message + more}}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Any, exc: HTTPException) -> JSONResponse:
        kind = "NotFoundError" if exc.status_code == 404 else "HTTPError"
        message = one_line(str(exc.detail)) if exc.detail else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route; see /docs for the API"
        return JSONResponse({"error": {"type": kind, "message": message}}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Any, exc: Exception) -> JSONResponse:
        status, body = error_body(exc)
        return JSONResponse(body, status_code=status)


def _mount_web(app: Any) -> None:
    from fastapi.responses import FileResponse, JSONResponse

    page = WEB_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    def home() -> Any:
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return JSONResponse({"sap-rag": "see /docs for the API"})

    if WEB_DIR.is_dir():
        from starlette.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=WEB_DIR, follow_symlink=False), name="static")


def _mount_mcp(app: Any, service: IndexService) -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        logger.info("MCP is off: the mcp package is not installed (pip install 'sap-rag[serve]')")
        return
    try:
        from .mcp_tools import mount_mcp
    except ImportError as exc:
        logger.info("MCP is off: %s", one_line(exc))
        return
    mount_mcp(app, service)


class BodyLimitMiddleware:
    """Bodies other than multipart uploads (which stream to disk under their own limits) are read up to
    ``max_json_bytes`` and refused with 413 beyond it, before any route parses them."""

    def __init__(self, app: Any, *, max_json_bytes: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)
            return
        if scope.get("path", "").startswith("/mcp"):
            await self.app(scope, receive, send)  # the MCP transport bounds its own messages
            return
        limit = self.max_json_bytes
        declared = headers.get(b"content-length", b"")
        body = bytearray()
        too_big = declared.isdigit() and int(declared) > limit
        while not too_big:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            too_big = len(body) > limit
            if not message.get("more_body", False):
                break
        if too_big:
            error = LimitExceededError(f"the request body is over {limit:,} bytes, the most this server takes for JSON")
            status, payload = error_body(error)
            data = json.dumps(payload).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": data})
            return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def check_json_object(value: Any, what: str) -> dict[str, Any] | None:
    """A form field holding a JSON object (metadata, filter), parsed; None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a JSON object: {one_line(exc)}") from None
    if parsed is not None and not isinstance(parsed, dict):
        raise InvalidInputError(f"{what} must be a JSON object, got {type(parsed).__name__}")
    return parsed
