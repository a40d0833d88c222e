"""Helpers for the MCP and web-page tests: the sample index, a live uvicorn server on a free loopback
port, and MCP client sessions over the SDK's own transports (stdio and streamable HTTP)."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "data"
TOY_CHECKPOINT = ROOT / "models" / "sap-rag-toy-colqwen2"

# Demo questions (scripts/demo.sh, tests/test_toy_model.py) and the sample page that answers each.
QUESTIONS = {
    "What was the revenue of Acme Industries in 2022?": ("acme_industries_2023.pdf", 1),
    "How many customers did Cobalt Health have in 2023?": ("cobalt_health_2023.pdf", 1),
    "What was the water use of Borealis Energy in 2021?": ("borealis_energy_2023.pdf", 2),
}


def build_sample_index(path: Path, encoder: Any) -> None:
    """The three sample PDFs indexed with ``encoder`` at ``path`` (closed again: another process may open it),
    and the encoder's compiled query side cached as ``sap-rag index`` leaves it, so a ``sap-rag mcp``
    process starts as it would after that command."""
    from sap_rag import SAPIndex
    from sap_rag.encoders.compiled import remember_queries

    with SAPIndex.create(path, encoder=encoder) as index:
        index.add_documents(SAMPLES)
    remember_queries(encoder)


def sample_index(tmp_path_factory: Any, encoder: Any) -> Path:
    """A fresh copy of the sample index: built once per session for every server, MCP and web test
    (``_serve_fixtures.sample_index``, the slow part), then copied."""
    from _serve_fixtures import sample_index as shared_build

    copy = tmp_path_factory.mktemp("sample-index") / "index"
    shutil.copytree(shared_build(encoder, tmp_path_factory.getbasetemp()), copy, symlinks=True)
    return copy


class StandInService:
    """The read side of the server's ``IndexService`` over an open ``SAPIndex`` (for tests that need the
    MCP tools without the whole server)."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.config = None

    def search(self, query: Any, k: int, filter: dict | None = None, **options: Any) -> list[Any]:
        return self.index.search(query, k, filter=filter, **options)

    def get_pages(self, page_ids: list[str]) -> list[Any]:
        return self.index.get_pages(page_ids)

    def page_image(self, page_id: str, max_side: int | None = None, fmt: str = "jpeg", quality: int = 85) -> bytes:
        from PIL import Image

        [hit] = self.index.get_pages([page_id])
        with Image.open(hit.image_path) as image:
            image = image.convert("RGB")
        if max_side:
            image.thumbnail((max_side, max_side))
        out = io.BytesIO()
        image.save(out, format="JPEG" if fmt == "jpeg" else "PNG", quality=quality)
        return out.getvalue()

    def documents(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        ids = self.index.documents()
        ids = ids[offset:] if limit is None else ids[offset : offset + limit]
        out = []
        for doc_id in ids:
            info = self.index.document(doc_id)
            out.append({"doc_id": doc_id, "pages": info.num_pages, "metadata": info.metadata})
        return out

    def stats(self) -> dict[str, Any]:
        return {"documents": len(self.index.documents())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(app: Any, timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yields its base URL; stops it after."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.asynccontextmanager
async def http_session(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Any]:
    """An initialized MCP ``ClientSession`` over streamable HTTP to ``url`` (the SDK's own client)."""
    from mcp import ClientSession
    from mcp.shared._httpx_utils import create_mcp_http_client

    try:
        from mcp.client.streamable_http import streamable_http_client
    except ImportError:  # mcp < 1.24
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(url, headers=headers) as (read, write, _), ClientSession(read, write) as s:
            await s.initialize()
            yield s
        return
    async with (
        create_mcp_http_client(headers=headers) as client,
        streamable_http_client(url, http_client=client) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def stdio_session(command: str, args: list[str], env: dict[str, str] | None = None) -> AsyncIterator[Any]:
    """An initialized MCP ``ClientSession`` to a server process started with ``command args`` (stdio)."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(ROOT))
    async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
        await session.initialize()
        yield session


def is_error(result: Any) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", False))


def mime_type(block: Any) -> str:
    return getattr(block, "mime_type", None) or block.mimeType


def structured(result: Any) -> Any:
    value = getattr(result, "structured_content", None)
    return value if value is not None else result.structuredContent
