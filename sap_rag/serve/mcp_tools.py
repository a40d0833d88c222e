"""MCP tools over a served index: ``search_pages``, ``get_page`` and ``list_documents``.

Agents reach retrievers over the Model Context Protocol. The same three tools are served two ways,
both built with the official ``mcp`` SDK (``pip install 'sap-rag[serve]'``; its 1.x ``FastMCP`` and
2.x ``MCPServer`` are both accepted):

- over stdio by ``sap-rag mcp --index DIR`` (:func:`run_stdio`), for desktop agents that start the
  server themselves;
- over streamable HTTP at ``/mcp`` of the HTTP server (:func:`mount_mcp`), for agents that share one
  server (and its one model) with app workers and browsers.

The tools work on a *service*: an object with the read methods of ``sap_rag.serve.service.IndexService``
(``search``, ``get_pages``, ``page_image``, ``documents``, optionally ``config.max_k``). Each page
comes back as its text (document, page, relevance, page id, the page's text) and its image as MCP
image content: a JPEG scaled to at most :attr:`MCPOptions.image_max_side` pixels and re-encoded
smaller until it is at most :attr:`MCPOptions.image_max_bytes`, so a result of ``k`` pages stays
small in an agent's context.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError, MissingDependencyError, SapRagError

logger = logging.getLogger(__name__)

__all__ = ["MCPOptions", "bounded_jpeg", "build_mcp_server", "mount_mcp", "run_stdio"]

SERVER_NAME = "sap-rag"
INSTRUCTIONS = (
    "Search an index of document pages (PDF pages and images) by meaning. search_pages returns the best "
    "pages for a question, each as its text and its image; get_page fetches one page by the page id that "
    "search_pages gives; list_documents lists the indexed documents and their ids (use one as doc_id to "
    "search within a document). Read the page images: charts and tables often answer what the text does not."
)
INSTALL_HINT = "the MCP server needs the 'mcp' package: pip install 'sap-rag[serve]'"


@dataclass(frozen=True)
class MCPOptions:
    """How much one tool answer may hold.

    Attributes:
        image_max_side: largest side, in pixels, of a page image sent to the agent.
        image_quality: JPEG quality of those images (1-95).
        image_max_bytes: largest encoded image; a bigger one is scaled down until it fits.
        max_k: most pages one ``search_pages`` call returns (the server's own ``max_k`` may be lower).
        max_text_chars: longest page text sent (longer text is cut, marked with ``[...]``).
        max_documents: most documents one ``list_documents`` call returns (page with ``offset``).
        max_request_bytes: largest body of one HTTP request to ``/mcp`` (413 beyond it; tool
            arguments are small, and mcp 1.x reads a request's whole body without a limit).
    """

    image_max_side: int = 768
    image_quality: int = 70
    image_max_bytes: int = 100_000
    max_k: int = 20
    max_text_chars: int = 4_000
    max_documents: int = 500
    max_request_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        names = ("image_max_side", "image_max_bytes", "max_k", "max_text_chars", "max_documents", "max_request_bytes")
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"MCPOptions.{name} must be a whole number of at least 1, got {value!r}")
        if self.image_max_side < 64 or self.image_max_bytes < 4_096:
            raise InvalidInputError("MCPOptions: image_max_side must be at least 64 and image_max_bytes at least 4096")
        q = self.image_quality
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 95:
            raise InvalidInputError(f"MCPOptions.image_quality must be a whole number from 1 to 95, got {q!r}")


# --- the SDK, imported when first needed (``import sap_rag`` must not pull in mcp) ---------------------


def _sdk() -> tuple[Any, Any, Any]:
    """``(server class, ToolError, mcp.types)`` of the installed SDK: 2.x ``MCPServer`` or 1.x ``FastMCP``."""
    try:
        import mcp.types as mcp_types
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:
        try:
            from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef]
            from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]
        except ImportError as exc:
            raise MissingDependencyError(INSTALL_HINT + " (mcp>=1.20)") from exc
    return MCPServer, ToolError, mcp_types


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --- page images ---------------------------------------------------------------------------------------


def bounded_jpeg(data: bytes, *, max_side: int, quality: int, max_bytes: int) -> bytes:
    """``data`` (any image PIL reads) as a JPEG with sides at most ``max_side`` and at most ``max_bytes``.

    A JPEG that already fits both bounds is returned as it is (no second lossy encoding). Otherwise
    the image is scaled down (never up) to ``max_side``, encoded at ``quality``, and scaled down
    further by 3/4 per step until it fits ``max_bytes``. Transparency is flattened on white.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        if opened.format == "JPEG" and max(opened.size) <= max_side and len(data) <= max_bytes:
            return data
        image = opened.convert("RGBA") if opened.mode in ("RGBA", "LA", "P") else opened.convert("RGB")
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    side = min(max_side, max(image.size))
    while True:
        scaled = image.copy()
        scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        scaled.save(buffer, format="JPEG", quality=quality, optimize=True)
        out = buffer.getvalue()
        if len(out) <= max_bytes or side <= 32:
            return out
        side = max(32, side * 3 // 4)


# --- the tools -----------------------------------------------------------------------------------------


class _Tools:
    """The tools' bodies: plain methods over the service, each run in a worker thread by the SDK wrappers."""

    def __init__(self, service: Any, options: MCPOptions, mcp_types: Any) -> None:
        self.service = service
        self.options = options
        self.types = mcp_types

    def max_k(self) -> int:
        config = getattr(self.service, "config", None)
        server_max = getattr(config, "max_k", None)
        return min(self.options.max_k, server_max) if isinstance(server_max, int) else self.options.max_k

    def search_pages(self, query: str, k: int, doc_id: str | None) -> list[Any]:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("the query is empty; give some words to search for")
        limit = self.max_k()
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit:
            raise InvalidInputError(f"k must be a whole number from 1 to {limit}, got {k!r}")
        if doc_id is not None and (not isinstance(doc_id, str) or not doc_id.strip()):
            raise InvalidInputError("doc_id must be a document id from list_documents, or left out")
        hits = self.service.search(query, k, {"doc_id": doc_id} if doc_id else None)
        where = f" in document {doc_id!r}" if doc_id else ""
        if not hits:
            return [self._text(f"No pages found{where} for {query!r}.")]
        content = [self._text(f"{len(hits)} page{'s' if len(hits) != 1 else ''}{where}, best first:")]
        for rank, hit in enumerate(hits, 1):
            content.extend(self._page(hit, rank))
        return content

    def get_page(self, page_id: str) -> list[Any]:
        if not isinstance(page_id, str) or not page_id.strip():
            raise InvalidInputError("page_id is empty; give a page id from search_pages, like 'report:p3'")
        [hit] = self.service.get_pages([page_id])
        if hit is None:
            raise InvalidInputError(
                f"no page {page_id!r} in the index; page ids come from search_pages (like 'report:p3')"
            )
        return self._page(hit, None)

    def list_documents(self, limit: int, offset: int) -> dict[str, Any]:
        most = self.options.max_documents
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
            raise InvalidInputError(f"limit must be a whole number from 1 to {most}, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidInputError(f"offset must be a whole number of at least 0, got {offset!r}")
        total = self.service.stats()["documents"]
        page = [_document_summary(d) for d in self.service.documents(offset=offset, limit=limit)]
        return {"total": total, "offset": offset, "documents": page}

    # -- content blocks --

    def _text(self, text: str) -> Any:
        return self.types.TextContent(type="text", text=text)

    def _page(self, hit: Any, rank: int | None) -> list[Any]:
        name = _document_name(hit.doc_id, hit.metadata)
        text = hit.text or ""
        if len(text) > self.options.max_text_chars:
            text = text[: self.options.max_text_chars].rstrip() + " [...]"
        head = f"{name}, page {hit.page_number} (page_id {hit.page_id}"
        head += f", relevance {hit.relevance:.2f})" if rank is not None else ")"
        if rank is not None:
            head = f"[{rank}] {head}"
        blocks = [self._text(f"{head}\n{text}")]
        image = self._image(hit)
        if image is not None:
            blocks.append(image)
        return blocks

    def _image(self, hit: Any) -> Any | None:
        if getattr(hit, "image_path", None) is None:
            return None
        opts = self.options
        try:
            raw = self.service.page_image(hit.page_id, opts.image_max_side, "jpeg", quality=opts.image_quality)
        except SapRagError as exc:  # a page whose image cannot be read still has its text
            logger.warning("no image for page %s: %s", hit.page_id, _one_line(exc))
            return None
        side, quality = opts.image_max_side, opts.image_quality
        data = bounded_jpeg(raw, max_side=side, quality=quality, max_bytes=opts.image_max_bytes)
        return self.types.ImageContent(type="image", data=base64.b64encode(data).decode("ascii"), mimeType="image/jpeg")


def _document_name(doc_id: str, metadata: Any) -> str:
    if isinstance(metadata, Mapping):
        for key in ("filename", "source"):
            value = metadata.get(key)
            if isinstance(value, str) and value:
                return f"{value} (doc {doc_id})" if value != doc_id else doc_id
    return doc_id


def _document_summary(document: Any) -> dict[str, Any]:
    """One entry of ``list_documents`` from a service's document record (a dict or a ``DocumentInfo``)."""
    if isinstance(document, Mapping):
        record = dict(document)
    else:
        record = {
            "doc_id": document.doc_id,
            "pages": document.num_pages,
            "metadata": dict(document.metadata),
        }
    out: dict[str, Any] = {"doc_id": record.get("doc_id"), "pages": record.get("pages", record.get("num_pages"))}
    metadata = record.get("metadata") or {}
    filename = record.get("filename") or (metadata.get("filename") if isinstance(metadata, Mapping) else None)
    if filename:
        out["filename"] = filename
    out["metadata"] = metadata
    return out


def build_mcp_server(service: Any, options: MCPOptions | None = None) -> Any:
    """An SDK MCP server (``MCPServer``, or ``FastMCP`` on mcp 1.x) with the three tools over ``service``.

    Tool calls run the service's (blocking) methods in worker threads, so an HTTP server's event
    loop keeps serving while a search encodes its query. A ``SapRagError`` (bad input, unknown page)
    reaches the agent as a tool error with its one-line message; anything else as a generic tool
    error, its traceback only in the server log.
    """
    options = options or MCPOptions()
    server_class, tool_error, mcp_types = _sdk()
    import anyio

    tools = _Tools(service, options, mcp_types)

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except SapRagError as exc:
            raise tool_error(_one_line(exc)) from exc

    async def search_pages(query: str, k: int = 5, doc_id: str | None = None) -> list[Any]:
        """Search the indexed pages for a question or keywords; returns the best `k` pages, best first.

        Each page comes as a text block (document, page number, page_id, relevance in [0, 1], and
        the page's text) followed by the page's image. `doc_id` (from list_documents) searches
        one document only.
        """
        return await call(tools.search_pages, query, k, doc_id)

    async def get_page(page_id: str) -> list[Any]:
        """One page by its page_id (as search_pages gives it, e.g. 'report:p3'): its text and its image."""
        return await call(tools.get_page, page_id)

    async def list_documents(limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """The indexed documents (doc_id, pages, filename or source, metadata), `limit` from `offset`."""
        return await call(tools.list_documents, limit, offset)

    server = server_class(SERVER_NAME, instructions=INSTRUCTIONS)
    read_only = mcp_types.ToolAnnotations(readOnlyHint=True, openWorldHint=False)
    server.add_tool(search_pages, annotations=read_only, structured_output=False)
    server.add_tool(get_page, annotations=read_only, structured_output=False)
    server.add_tool(list_documents, annotations=read_only, structured_output=True)
    return server


def mount_mcp(
    app: Any,
    service: Any,
    *,
    path: str = "/mcp",
    options: MCPOptions | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> Any:
    """Serve the MCP tools over ``service`` at ``path`` of the Starlette/FastAPI ``app`` (streamable HTTP).

    The MCP endpoint is added as a route of ``app`` itself (not a sub-app mount, which would answer
    ``/mcp`` with a redirect to ``/mcp/``), so the app's middleware (the API key check) applies to it;
    its request bodies are bounded by ``options.max_request_bytes`` (:class:`~.mcp_http.BodyLimit`).

    The SDK's session manager must run while the app runs, and a mounted app's own lifespan never
    runs. So the manager's ``run()`` is appended to ``app.state.lifespan_hooks`` when the app has
    that list (``create_app`` enters each hook in its lifespan); otherwise ``app``'s lifespan is
    wrapped: the app's own lifespan starts first, then the session manager, stopping in reverse.
    Call it once per app, before the app starts. Returns the SDK server.

    ``allowed_hosts``: Host headers the MCP endpoint accepts (DNS-rebinding protection), e.g.
    ``["127.0.0.1:*", "localhost:*"]``; None leaves Host checking to the app and its proxy.
    """
    if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
        raise InvalidInputError(f"the MCP path must start with '/' and not end with one, got {path!r}")
    from starlette.routing import Route

    from .mcp_http import BodyLimit, streamable_http_app

    options = options or MCPOptions()
    server = build_mcp_server(service, options)
    http_app = streamable_http_app(server, path, allowed_hosts)
    app.router.routes.append(Route(path, endpoint=BodyLimit(http_app, options.max_request_bytes)))
    hooks = getattr(getattr(app, "state", None), "lifespan_hooks", None)
    if isinstance(hooks, list):
        hooks.append(server.session_manager.run)
        return server
    original = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(outer_app: Any) -> AsyncIterator[Any]:
        async with original(outer_app) as state, server.session_manager.run():
            yield state

    app.router.lifespan_context = lifespan
    return server


def run_stdio(service: Any, options: MCPOptions | None = None) -> None:
    """Serve the tools over stdin/stdout until the client closes them (what ``sap-rag mcp`` runs).

    Stdout carries the protocol only: logs and progress go to stderr.
    """
    server = build_mcp_server(service, options)
    import anyio

    anyio.run(server.run_stdio_async)
