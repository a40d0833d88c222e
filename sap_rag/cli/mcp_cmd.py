"""``sap-rag mcp``: the MCP tools (search_pages, get_page, list_documents) over stdio, for desktop agents.

The agent starts this command itself and talks MCP over its stdin/stdout; stdout carries only
the protocol (logs and progress go to stderr). The index is opened read-only (the tools only
read), so several agents and ``sap-rag search`` may use it at once; a running ``sap-rag serve``
holds it for writing and offers the same tools at ``/mcp`` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ._common import help_formatter, positive_int, verbose_parent

CLIENT_CONFIG = """{"mcpServers": {"sap-rag": {"command": "sap-rag", "args": ["mcp", "--index", "/abs/path/idx"]}}}"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "mcp",
        help="serve the index's search tools to an agent over MCP (stdio)",
        description="Serve MCP tools over stdin/stdout for an agent that starts this command (Claude Desktop, "
        "IDE agents, ...): search_pages (each page's text and its image), get_page, list_documents. The index "
        "is opened read-only. For agents that share one server, use 'sap-rag serve' (the same tools at /mcp).",
        epilog=f"""examples:
  sap-rag mcp --index ./idx
  sap-rag mcp --index ./idx --image-max-side 512      # smaller page images in the agent's context

an agent's MCP configuration (e.g. claude_desktop_config.json):
  {CLIENT_CONFIG}""",
        formatter_class=help_formatter,
        parents=[verbose_parent()],
    )
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--model", help="the index's model (default: the one it was built with; another is refused)")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument(
        "--image-max-side",
        type=_image_side,
        default=768,
        help="largest side of the page images sent, in pixels (default 768)",
    )
    p.add_argument(
        "--max-k", type=positive_int("--max-k", 100), default=20, help="most pages one search returns (default 20)"
    )
    p.set_defaults(func=run)


def _image_side(text: str) -> int:
    """``--image-max-side``: 64 to 4096 pixels."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 64 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"--image-max-side takes a number of pixels from 64 to 4096, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from ._common import read_manifest

    read_manifest(args.index)  # a wrong --index is answered before anything heavy loads
    from ..serve.mcp_tools import MCPOptions, run_stdio

    options = MCPOptions(image_max_side=args.image_max_side, max_k=args.max_k)
    # Nothing but the protocol may reach stdout: anything printed while the model loads goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        service = _service(args)
    try:
        run_stdio(service, options)
    finally:
        service.close()
    return 0


def _service(args: argparse.Namespace):
    from ..serve.service import IndexService
    from .index_cmds import _open

    # queries=True: only query strings are encoded, so a small model's compiled query side will do.
    index, _spec = _open(args.index, args.device, args.model, read_only=True, queries=True)
    try:
        return IndexService(index, owns_index=True)
    except BaseException:
        index.close()
        raise
