"""``sap-rag index | search | info | delete | show``: an index of PDFs and images from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

DEFAULT_MODEL = "tiny:colqwen2"
TINY_NOTE = "note: a tiny random-weight model; results show that the plumbing works, not retrieval quality"


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "index",
        help="add PDFs and images (files or folders) to an index, creating it if needed",
        description="Add PDFs and images to an index. Each file is one document whose id is a hash of its "
        "content: re-adding a file is a no-op and a changed file replaces its old pages.",
        epilog="""examples:
  sap-rag index examples/data --index ./idx                       # tiny offline model
  sap-rag index reports/ scans/page1.png --index ./idx --model vidore/colqwen2-v1.0
  sap-rag index reports/ --index ./idx --include '*.pdf' --skip-errors""",
        formatter_class=_formatter,
    )
    p.add_argument("paths", nargs="+", type=Path, help="files and/or folders (searched recursively)")
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--model", help=f"model for a new index (default {DEFAULT_MODEL}); must match an existing one")
    p.add_argument("--keep-ratio", type=float, default=0.1, help="share of visual tokens kept, new index only")
    p.add_argument("--window", help="SAP layer window for a new index: a calibration .json or layers like 11,12,13")
    p.add_argument("--include", action="append", help="filename pattern for folder contents (repeatable)")
    p.add_argument("--skip-errors", action="store_true", help="index readable files, report unreadable ones")
    p.add_argument("--dpi", type=int, default=144, help="PDF rendering resolution (default 144)")
    p.add_argument("--batch-size", type=int, default=4, help="pages per forward pass")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.set_defaults(func=run_index)

    p = subparsers.add_parser(
        "search",
        help="search an index",
        description="Search an index with a text query; prints the best pages.",
        epilog="""examples:
  sap-rag search "revenue by region in 2023" --index ./idx
  sap-rag search "energy use" --index ./idx -k 3 --filter filename=energy_outlook.pdf --json""",
        formatter_class=_formatter,
    )
    p.add_argument("query", help="the question or keywords")
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("-k", type=int, default=5, help="number of pages (default 5)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="metadata filter (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--device", help="cuda, cpu, ...")
    p.set_defaults(func=run_search)

    p = subparsers.add_parser(
        "info",
        help="describe an index",
        description="Model, family, window, keep ratio, pages, documents and size on disk of an index.",
        epilog="example:\n  sap-rag info --index ./idx",
        formatter_class=_formatter,
    )
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)

    p = subparsers.add_parser(
        "delete",
        help="remove a document from an index",
        description="Remove every page of a document.",
        epilog="example:\n  sap-rag delete 2cf24dba5fb0a30e26e83b2a --index ./idx",
        formatter_class=_formatter,
    )
    p.add_argument("doc_id", help="the document id (see 'sap-rag search' or 'sap-rag info --documents')")
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.set_defaults(func=run_delete)

    p = subparsers.add_parser(
        "show",
        help="draw a page with its kept anchors",
        description="Draw a stored page with a heatmap of its SAP scores and its kept anchors outlined.",
        epilog="example:\n  sap-rag show --index ./idx --doc 2cf24dba5fb0a30e26e83b2a --page 1 --out overlay.png",
        formatter_class=_formatter,
    )
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--doc", required=True, help="document id")
    p.add_argument("--page", type=int, default=1, help="1-based page number (default 1)")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.add_argument("--device", help="cuda, cpu, ...")
    p.set_defaults(func=run_show)


def _window(value: str | None) -> Any:
    if value is None or value.endswith(".json"):
        return value
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise InvalidInputError(f"--window takes a calibration .json or layers like 11,12,13, got {value!r}") from None


def _open(path: Path, device: str | None = None, model: str | None = None):
    """Open the index at ``path`` with its own encoder (on ``device``); refuse a different ``model``."""
    from ..encoders.loading import load_encoder
    from ..index import SAPIndex
    from ..index.manifest import Manifest

    recorded = Manifest.read(path).encoder
    if recorded is None:
        raise InvalidInputError(f"the index at {path} has no encoder (it holds precomputed pages only)")
    spec = recorded["spec"]
    if model is not None and model != spec:
        raise InvalidInputError(
            f"the index at {path} was built with --model {spec}, not {model}; "
            "leave --model out to use the index's model, or choose another --index"
        )
    encoder = load_encoder(spec, device=device, window=recorded.get("window"))
    return SAPIndex.open(path, encoder=encoder), spec


def run_index(args: argparse.Namespace) -> int:
    from ..encoders.loading import load_encoder
    from ..index import SAPIndex
    from ..index.manifest import MANIFEST_NAME
    from ..ingest.documents import DEFAULT_INCLUDE

    if (args.index / MANIFEST_NAME).is_file():
        index, spec = _open(args.index, args.device, args.model)
    else:
        spec = args.model or DEFAULT_MODEL
        encoder = load_encoder(spec, device=args.device, window=_window(args.window), batch_size=args.batch_size)
        index = SAPIndex.create(args.index, encoder=encoder, keep_ratio=args.keep_ratio)
    if spec.startswith("tiny:"):
        print(TINY_NOTE)
    with index:
        report = index.add_documents(
            args.paths,
            include=args.include or DEFAULT_INCLUDE,
            skip_errors=args.skip_errors,
            dpi=args.dpi,
            batch_size=args.batch_size,
            show_progress=True,
        )
        stats = index.stats()
    pages = report.pages
    print(
        f"indexed {len(report.added)} documents, {pages} pages in {report.seconds:.1f} s"
        + (f" ({pages / report.seconds:.2f} pages/s)" if pages and report.seconds else "")
    )
    if report.unchanged:
        print(f"unchanged (already indexed): {len(report.unchanged)} documents")
    if report.replaced:
        print(f"replaced older versions: {len(report.replaced)} documents")
    if pages:
        print(f"vectors kept: {report.vectors} ({report.vectors / pages:.1f} per page)")
    per_page = f"{stats.bytes_per_page:,.0f}" if stats.bytes_per_page else "n/a"
    print(f"index: {stats.documents} documents, {stats.pages} pages, {per_page} bytes per page on disk")
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable files:", file=sys.stderr)
        for error in report.skipped:
            print(f"  {error.message}", file=sys.stderr)
    return 0


def _parse_filters(items: list[str]) -> dict[str, Any] | None:
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--filter takes KEY=VALUE, got {item!r}")
        parsed: Any = value
        if key.strip() == "page_number" and value.isdigit():
            parsed = int(value)
        if key.strip() in out:  # repeated key: any of the values
            previous = out[key.strip()]
            out[key.strip()] = [*previous, parsed] if isinstance(previous, list) else [previous, parsed]
        else:
            out[key.strip()] = parsed
    return out


def run_search(args: argparse.Namespace) -> int:
    index, spec = _open(args.index, args.device)
    with index:
        hits = index.search(args.query, k=args.k, filter=_parse_filters(args.filter))
    if args.json:
        rows = [
            {
                "rank": rank,
                "score": hit.score,
                "doc_id": hit.doc_id,
                "page_number": hit.page_number,
                "image_path": str(hit.image_path) if hit.image_path else None,
                "metadata": hit.metadata,
            }
            for rank, hit in enumerate(hits, 1)
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if spec.startswith("tiny:"):
        print(TINY_NOTE)
    if not hits:
        print("no results")
        return 0
    print(f"{'rank':>4}  {'score':>8}  {'page':>4}  {'document':24}  file")
    for rank, hit in enumerate(hits, 1):
        name = hit.metadata.get("filename", "")
        print(f"{rank:>4}  {hit.score:8.3f}  {hit.page_number:>4}  {hit.doc_id[:24]:24}  {name}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..index import SAPIndex

    with SAPIndex.open(args.index) as index:  # the encoder loads only if needed: not here
        stats = index.stats()
        manifest = index.manifest
        documents = index.documents()
    encoder = manifest.encoder or {}
    info = {
        "index": str(args.index),
        "model": encoder.get("spec"),
        "family": encoder.get("family"),
        "window": encoder.get("window"),
        "keep_ratio": stats.keep_ratio,
        "pruner": manifest.pruner.get("name"),
        "storage": stats.storage,
        "backend": stats.backend,
        "documents": stats.documents,
        "pages": stats.pages,
        "vectors": stats.vectors,
        "vectors_per_page": round(stats.vectors_per_page, 2),
        "bytes_on_disk": stats.bytes_on_disk,
        "bytes_per_page": round(stats.bytes_per_page) if stats.bytes_per_page else None,
        "image_bytes": stats.image_bytes,
        "document_ids": documents,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key != "document_ids":
            print(f"{key:>17}: {value}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from ..index import SAPIndex

    with SAPIndex.open(args.index) as index:
        pages = index.delete(args.doc_id)
    print(f"deleted {args.doc_id}: {pages} pages")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..viz import save_anchor_overlay

    index, _ = _open(args.index, args.device)
    with index:
        document = index.document(args.doc)
        if not 1 <= args.page <= document.num_pages:
            raise InvalidInputError(f"document {args.doc} has pages 1..{document.num_pages}, not {args.page}")
        image_path = document.image_paths[args.page - 1]
        if image_path is None:
            raise InvalidInputError(f"the index keeps no image of page {args.page} of {args.doc}")
        from ..ingest.images import load_image

        image = load_image(image_path)
        (page,) = index.encoder.encode_pages([image])
        pruned = index.pruner.prune(page)
    path = save_anchor_overlay(args.out, image, page, pruned)
    print(f"wrote {path} ({image.size[0]}x{image.size[1]}, {pruned.num_kept} of {page.num_tokens} patches kept)")
    return 0
