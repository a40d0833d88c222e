"""The MCP tools (search_pages, get_page, list_documents) through the SDK's own client: over streamable
HTTP at /mcp of a live server (create_app, uvicorn on a free loopback port, API key on) and over stdio
from ``sap-rag mcp``, on the sample PDFs indexed with the toy model."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys

import anyio
import pytest

pytest.importorskip("mcp")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _mcp_fixtures import (
    QUESTIONS,
    SAMPLES,
    StandInService,
    http_session,
    is_error,
    live_server,
    mime_type,
    sample_index,
    stdio_session,
    structured,
)
from PIL import Image

from sap_rag.serve.mcp_tools import MCPOptions, bounded_jpeg

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PAGE_ID = re.compile(r"\(page_id (\S+?)[,)]")


@pytest.fixture(scope="module")
def served(tmp_path_factory, toy_encoder):
    """``(base URL, open index)`` of a live server over a copy of the sample index, with an API key."""
    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig, create_app

    index = SAPIndex.open(sample_index(tmp_path_factory, toy_encoder), encoder=toy_encoder)
    app = create_app(index, encoder=toy_encoder, config=ServeConfig(api_key=KEY))
    with live_server(app) as url:
        yield url, index
    index.close()


def call(url: str, name: str, arguments: dict, headers: dict | None = AUTH):
    async def go():
        async with http_session(f"{url}/mcp", headers) as session:
            return await session.call_tool(name, arguments)

    return anyio.run(go)


def fails(fn) -> bool:
    try:
        fn()
    except Exception:  # the SDK raises (groups of) its own errors, which vary between versions
        return True
    return False


def page_of(result) -> tuple[str, int]:
    """(filename, page number) of the first page in a search_pages result (its second block)."""
    head = result.content[1].text.splitlines()[0]
    match = re.match(r"\[1\] (\S+) \(doc \S+\), page (\d+) ", head)
    assert match, head
    return match.group(1), int(match.group(2))


def decode_image(block) -> Image.Image:
    assert block.type == "image" and mime_type(block) == "image/jpeg"
    data = base64.b64decode(block.data)
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "JPEG"
    return image, len(data)


def test_tools_are_listed_with_their_arguments(served):
    async def go():
        async with http_session(f"{served[0]}/mcp", AUTH) as session:
            return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in anyio.run(go)}
    assert set(tools) == {"search_pages", "get_page", "list_documents"}
    schema = getattr(tools["search_pages"], "input_schema", None) or tools["search_pages"].inputSchema
    assert schema["required"] == ["query"] and {"k", "doc_id"} <= set(schema["properties"])


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_search_pages_puts_the_answering_page_first_with_a_bounded_image(served, question):
    result = call(served[0], "search_pages", {"query": question, "k": 3})
    assert not is_error(result)
    kinds = [block.type for block in result.content]
    assert kinds == ["text"] + ["text", "image"] * 3, kinds
    assert page_of(result) == QUESTIONS[question]
    options = MCPOptions()
    for block in result.content[2::2]:
        image, size = decode_image(block)
        assert max(image.size) <= options.image_max_side and size <= options.image_max_bytes
    relevance = [float(m) for m in re.findall(r"relevance (\d\.\d\d)\)", result.content[1].text)]
    assert relevance and 0 < relevance[0] <= 1


def test_get_page_returns_the_searched_page(served):
    url, index = served
    question = next(iter(QUESTIONS))
    found = call(url, "search_pages", {"query": question, "k": 1})
    page_id = PAGE_ID.search(found.content[1].text).group(1)
    result = call(url, "get_page", {"page_id": page_id})
    assert not is_error(result) and [b.type for b in result.content] == ["text", "image"]
    [hit] = index.get_pages([page_id])
    assert hit.text.splitlines()[0] in result.content[0].text
    image, _ = decode_image(result.content[1])
    with Image.open(hit.image_path) as stored:  # the same page: same shape, scaled
        assert abs(image.size[0] / image.size[1] - stored.size[0] / stored.size[1]) < 0.02


def test_search_within_one_document(served):
    url, index = served
    cobalt = next(d for d in index.documents() if index.document(d).metadata["filename"].startswith("cobalt"))
    result = call(url, "search_pages", {"query": "revenue of Acme Industries", "k": 5, "doc_id": cobalt})
    heads = [block.text for block in result.content[1::2]]
    assert len(heads) == 3 and all(f"(doc {cobalt})" in head for head in heads)


def test_list_documents_pages_through_the_index(served):
    url, _ = served
    everything = structured(call(url, "list_documents", {}))
    assert everything["total"] == 3
    assert sorted(d["filename"] for d in everything["documents"]) == sorted(p.name for p in SAMPLES.glob("*.pdf"))
    assert all(d["pages"] == 3 for d in everything["documents"])
    second = structured(call(url, "list_documents", {"limit": 1, "offset": 1}))
    assert second["documents"] == everything["documents"][1:2]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("search_pages", {"query": "revenue", "k": 0}, "k must be a whole number from 1 to 20"),
        ("search_pages", {"query": "revenue", "k": 21}, "k must be a whole number from 1 to 20"),
        ("search_pages", {"query": "   "}, "the query is empty"),
        ("search_pages", {"query": "x" * 5000}, "5,000 characters"),
        ("search_pages", {"query": "revenue", "doc_id": "no-such-doc"}, "No pages found in document 'no-such-doc'"),
        ("get_page", {"page_id": "no-such-doc:p1"}, "no page 'no-such-doc:p1' in the index"),
        ("get_page", {"page_id": "nonsense"}, "is not a page id"),
        ("list_documents", {"limit": 0}, "limit must be a whole number from 1 to 500"),
    ],
)
def test_bad_arguments_get_a_one_line_tool_error(served, tool, arguments, message):
    url, index = served
    before = index.stats()
    result = call(url, tool, arguments)
    text = result.content[0].text
    assert message in text and "\n" not in text and "Traceback" not in text
    assert is_error(result) == (not message.startswith("No pages"))
    assert index.stats() == before


def test_mcp_needs_the_api_key(served):
    import httpx

    url = served[0]
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    accept = {"Accept": "application/json, text/event-stream"}
    refused = httpx.post(f"{url}/mcp", json=hello, headers=accept, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "AuthError"
    for headers in (None, {"Authorization": "Bearer wrong-key-000000"}):
        assert fails(lambda h=headers: call(url, "list_documents", {}, headers=h))  # the SDK client gives up
    assert structured(call(url, "list_documents", {}, headers={"X-API-Key": KEY}))["total"] == 3


def test_an_oversized_mcp_request_is_refused_before_the_sdk_reads_it(served):
    import httpx

    url, index = served
    before = index.stats()
    headers = {**AUTH, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    huge = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "' + b"x" * 1_100_000 + b'"}}'
    refused = httpx.post(f"{url}/mcp", content=huge, headers=headers, timeout=30)
    assert refused.status_code == 413 and refused.json()["error"]["type"] == "LimitExceededError"

    def chunks():  # no content-length: counted as it arrives
        yield huge[:600_000]
        yield huge[600_000:]

    streamed = httpx.post(f"{url}/mcp", content=chunks(), headers=headers, timeout=30)
    assert streamed.status_code == 413
    assert structured(call(url, "list_documents", {}))["total"] == 3 and index.stats() == before


def test_mount_mcp_on_a_plain_fastapi_app_runs_its_session_manager(served):
    """Without create_app's lifespan hooks, mount_mcp wraps the app's own lifespan (which still runs)."""
    import contextlib

    from fastapi import FastAPI

    from sap_rag.serve.mcp_tools import mount_mcp

    ran = []

    @contextlib.asynccontextmanager
    async def lifespan(app):
        ran.append("start")
        yield
        ran.append("stop")

    import httpx

    app = FastAPI(lifespan=lifespan)
    mount_mcp(app, StandInService(served[1]), allowed_hosts=["127.0.0.1:*"])
    with live_server(app) as url:
        assert structured(call(url, "list_documents", {}, headers=None))["total"] == 3
        # allowed_hosts turns on the SDK's DNS-rebinding check: a page on another host name is refused
        rebound = {"Host": "attacker.example", "Content-Type": "application/json", "Accept": "application/json"}
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        assert httpx.post(f"{url}/mcp", json=ping, headers=rebound, timeout=30).status_code == 421
    assert ran == ["start", "stop"]


def test_bounded_jpeg_keeps_images_under_both_bounds():
    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1500, 1100, 3), dtype=np.uint8))
    raw = io.BytesIO()
    noise.save(raw, format="PNG")
    out = bounded_jpeg(raw.getvalue(), max_side=768, quality=70, max_bytes=30_000)
    image = Image.open(io.BytesIO(out))
    assert image.format == "JPEG" and max(image.size) <= 768 and len(out) <= 30_000
    assert max(image.size) < 768  # noise does not fit 30 KB at 768 px: it was scaled down further
    small = io.BytesIO()
    noise.resize((200, 150)).save(small, format="JPEG", quality=60)
    assert bounded_jpeg(small.getvalue(), max_side=768, quality=70, max_bytes=100_000) == small.getvalue()
    with pytest.raises(Exception, match="image_max_side"):
        MCPOptions(image_max_side=10)


# --- stdio: sap-rag mcp -------------------------------------------------------------------------------


def _mcp_command(index_dir) -> list[str]:
    """``sap-rag mcp --index DIR`` as this interpreter runs it (arguments for ``sys.executable``)."""
    return ["-c", "import sys; from sap_rag.cli.main import main; sys.exit(main())", "mcp", "--index", str(index_dir)]


def test_sap_rag_mcp_over_stdio(tmp_path_factory, toy_encoder):
    index_dir = sample_index(tmp_path_factory, toy_encoder)
    question = list(QUESTIONS)[1]

    async def go():
        async with stdio_session(sys.executable, _mcp_command(index_dir), env=dict(os.environ)) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            found = await session.call_tool("search_pages", {"query": question, "k": 2})
            documents = await session.call_tool("list_documents", {})
            bad = await session.call_tool("get_page", {"page_id": "nope:p1"})
            return names, found, documents, bad

    names, found, documents, bad = anyio.run(go)
    assert names == {"search_pages", "get_page", "list_documents"}
    assert page_of(found) == QUESTIONS[question]
    decode_image(found.content[2])
    assert structured(documents)["total"] == 3
    assert is_error(bad) and "no page 'nope:p1'" in bad.content[0].text


def test_sap_rag_mcp_refuses_a_missing_index_in_one_line(tmp_path):
    args = _mcp_command(tmp_path / "missing")
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: no sap-rag index at") and done.stderr.count("\n") == 1
