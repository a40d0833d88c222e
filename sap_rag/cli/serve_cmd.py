"""``sap-rag serve``: one long-lived process that owns the model and the index, over HTTP (and MCP at /mcp).

Host, key and limits are checked before the model loads: a non-loopback ``--host`` without an API
key is refused at once. The key comes from ``--api-key`` or ``$SAP_RAG_API_KEY`` (preferred: a
command line is visible to other users in ``ps``) and is never printed or logged.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InvalidInputError
from ._common import DEFAULT_MODEL, TINY_NOTE, help_formatter, positive_int, ratio, read_manifest, verbose_parent

__all__ = ["register", "run_serve"]

API_KEY_ENV = "SAP_RAG_API_KEY"

_LIMITS = (
    # option, ServeConfig field, help
    ("--max-file-mb", "max_file_bytes", "largest uploaded file, MB (default 100)", 1024 * 1024),
    ("--max-request-mb", "max_request_bytes", "largest upload request, MB (default 500)", 1024 * 1024),
    ("--max-files", "max_files", "most files per upload (default 100)", 1),
    ("--max-query-chars", "max_query_chars", "longest text query (default 2,000)", 1),
    ("--max-query-tokens", "max_query_tokens", "most tokens of a text query (default 512)", 1),
    ("--max-image-pixels", "max_image_pixels", "most pixels of a query image (default 25,000,000)", 1),
    ("--max-page-side", "max_page_image_side", "largest side of a page image sent (default 2,048)", 1),
    ("--max-k", "max_k", "largest k of a search (default 1,000)", 1),
    ("--max-queued-jobs", "max_queued_jobs", "uploads queued at once (default 64)", 1),
    ("--max-batch", "max_batch", "queries encoded together (default 32; 1 turns batching off)", 1),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve an index over HTTP: search, pages, uploads, a web page and MCP tools",
        description="Run one server process that owns the model and the index: an HTTP API with OpenAPI docs "
        "at /docs, a web page at /, MCP tools at /mcp. Searches keep answering while uploads are indexed. "
        "Listens on 127.0.0.1 unless --host says otherwise, which needs an API key. An index that does "
        "not exist yet is created with --model.",
        epilog=f"""examples:
  sap-rag serve --index ./idx                                   # http://127.0.0.1:8000, docs at /docs
  sap-rag serve --index ./idx --model models/sap-rag-toy-colqwen2 --port 8080
  SAP_RAG_API_KEY=$(openssl rand -hex 24) sap-rag serve --index ./idx --host 0.0.0.0
  sap-rag serve --index ./idx --allow-folder /data/reports      # POST /documents/from-path may read it
  SAP_RAG_API_KEY=... sap-rag serve --index ./idx --host 0.0.0.0 --allowed-host search.example.org

The API key: --api-key KEY or ${API_KEY_ENV} (prefer the variable: a command line shows in 'ps').
Clients send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'. Put TLS in a reverse proxy in front.""",
        formatter_class=help_formatter,
        parents=[verbose_parent()],
    )
    p.add_argument("--index", required=True, type=Path, help="index directory (created with --model if missing)")
    p.add_argument("--model", help=f"model for a new index (default {DEFAULT_MODEL}); must match an existing one")
    p.add_argument("--keep-ratio", type=ratio("--keep-ratio"), default=0.1, help="share of tokens kept, new index")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=positive_int("--port", 65535), default=8000, help="port (default 8000)")
    p.add_argument("--api-key", help=f"require this key (or set ${API_KEY_ENV}); at least 8 characters")
    p.add_argument(
        "--allow-folder",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a server-side folder POST /documents/from-path may read (repeatable; none by default)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="NAME",
        help="a Host name clients reach the server by: NAME, NAME:PORT or *.DOMAIN (repeatable; needs an API key "
        "for names other than 127.0.0.1, localhost, [::1]; default: any with a key, only those without one)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="folder for the server's own state (finished upload jobs, so GET /jobs/{id} answers after a restart); "
        "default $XDG_STATE_HOME/sap-rag/serve/<hash of the index path> (~/.local/state/...); 'none': memory only",
    )
    for option, _, text, _unit in _LIMITS:
        p.add_argument(option, type=positive_int(option), help=text)
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="micro-batching wait for more queries (default 5)")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument(
        "--threads",
        type=positive_int("--threads", 1024),
        help="torch CPU threads (default: torch's); on a busy or shared CPU machine 1 is often much faster",
    )
    p.add_argument("--no-mcp", action="store_true", help="do not serve the MCP tools at /mcp")
    p.set_defaults(func=run_serve)


def _config(args: argparse.Namespace, api_key: str | None):
    from ..serve.config import ServeConfig, is_loopback

    if not is_loopback(args.host) and not api_key:
        raise InvalidInputError(
            f"refusing to listen on {args.host} without an API key: anyone who reaches it could read and change "
            f"the index; set {API_KEY_ENV} (or --api-key), or keep the default --host 127.0.0.1"
        )
    if not args.max_wait_ms >= 0 or args.max_wait_ms > 1000:
        raise InvalidInputError(f"--max-wait-ms takes milliseconds from 0 to 1000, got {args.max_wait_ms}")
    limits = {}
    for option, name, _, unit in _LIMITS:
        value = getattr(args, option[2:].replace("-", "_"))
        if value is not None:
            limits[name] = value * unit
    for folder in args.allow_folder:
        if not folder.is_dir():
            raise InvalidInputError(f"--allow-folder {folder}: no such folder")
    return ServeConfig(
        api_key=api_key or None,
        allowed_folders=tuple(args.allow_folder),
        allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
        state_dir=_state_dir(args),
        max_wait_ms=args.max_wait_ms,
        **limits,
    )


def _state_dir(args: argparse.Namespace) -> Path | None:
    """``--state-dir``, or one folder per index under ``$XDG_STATE_HOME/sap-rag/serve`` (never inside the index)."""
    if args.state_dir is not None:
        return None if args.state_dir.strip().lower() == "none" else Path(args.state_dir)
    import hashlib

    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    key = hashlib.sha256(os.fsencode(args.index.resolve())).hexdigest()[:16]
    return base / "sap-rag" / "serve" / f"{args.index.resolve().name[:40]}-{key}"


def _open_index(args: argparse.Namespace):
    from ..encoders.loading import load_encoder
    from ..index import SAPIndex
    from ..index.manifest import MANIFEST_NAME

    if (args.index / MANIFEST_NAME).exists() or (args.index / MANIFEST_NAME).is_symlink():
        from ._common import recorded_model

        spec, window = recorded_model(args.index, read_manifest(args.index), args.model)
        encoder = load_encoder(spec, device=args.device, window=window)
        return SAPIndex.open(args.index, encoder=encoder), spec
    if args.index.exists() and (not args.index.is_dir() or any(args.index.iterdir())):
        raise InvalidInputError(
            f"{args.index} exists and is not an empty folder or a sap-rag index; choose another --index"
        )
    spec = args.model or DEFAULT_MODEL
    encoder = load_encoder(spec, device=args.device)
    return SAPIndex.create(args.index, encoder=encoder, keep_ratio=args.keep_ratio), spec


def run_serve(args: argparse.Namespace) -> int:
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    config = _config(args, api_key)  # before the model loads: a refused host answers at once
    try:
        import uvicorn
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("sap-rag serve needs the server packages: pip install 'sap-rag[serve]'") from None
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    index, spec = _open_index(args)
    if spec.startswith("tiny:"):
        print(TINY_NOTE)
    from ..serve.app import create_app

    app = create_app(index, config=config, mcp=not args.no_mcp)
    app.state.service._owns_index = True  # the server closes the index on shutdown
    shown = f"[{args.host}]" if ":" in args.host else args.host
    auth = "API key required" if config.api_key else "no API key: loopback only, Host 127.0.0.1/localhost/[::1]"
    print(f"sap-rag serving {args.index} on http://{shown}:{args.port} ({auth}); API docs at /docs", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="debug" if getattr(args, "verbose", False) else "info",
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    return 0
