"""``sap-rag info | delete | show``: look into an index, remove a document, draw a page's anchors."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import InvalidInputError
from ._common import (
    DOCUMENTS_HINT,
    help_formatter,
    per_page,
    positive_int,
    read_manifest,
    recorded_model,
    verbose_parent,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    common = [verbose_parent()]
    p = subparsers.add_parser(
        "info",
        help="describe an index (and list its documents)",
        description="Model, family, window, keep ratio, pages, documents and size on disk of an index.",
        epilog="examples:\n  sap-rag info --index ./idx\n  sap-rag info --index ./idx --documents",
        formatter_class=help_formatter,
        parents=common,
    )
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--documents", action="store_true", help="also list every document: id, pages, file name")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_info)

    p = subparsers.add_parser(
        "delete",
        help="remove a document from an index",
        description=f"Remove every page of a document; {DOCUMENTS_HINT}.",
        epilog="examples:\n  sap-rag info --index ./idx --documents        # the ids\n"
        "  sap-rag delete 2cf24dba5fb0a30e26e83b2a --index ./idx",
        formatter_class=help_formatter,
        parents=common,
    )
    p.add_argument("doc_id", help="the document id (see 'sap-rag info --index DIR --documents')")
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.set_defaults(func=run_delete)

    p = subparsers.add_parser(
        "show",
        help="draw a page with its kept anchors",
        description="Draw a stored page with a heatmap of its SAP scores and its kept anchors outlined.",
        epilog="example:\n  sap-rag show --index ./idx --doc 2cf24dba5fb0a30e26e83b2a --page 1 --out overlay.png",
        formatter_class=help_formatter,
        parents=common,
    )
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--doc", required=True, help=f"document id ({DOCUMENTS_HINT})")
    p.add_argument("--page", type=positive_int("--page"), default=1, help="1-based page number (default 1)")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.add_argument("--device", help="cuda, cpu, ...")
    p.set_defaults(func=run_show)


def run_info(args: argparse.Namespace) -> int:
    from ..index import SAPIndex
    from ..transfer.marker import incomplete_import

    read_manifest(args.index)
    with SAPIndex.open(args.index, read_only=True) as index:  # the encoder loads only if needed: not here
        stats = index.stats()
        manifest = index.manifest
        documents = [index.document(doc_id) for doc_id in index.documents()]
    encoder = manifest.encoder or {}
    info = {
        "index": os.path.abspath(args.index),
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
        "document_ids": [d.doc_id for d in documents],
        # an unfinished import is also logged (a warning on stderr) when the index opens
        "incomplete_import": incomplete_import(args.index, stats.documents),
    }
    if args.json:
        if args.documents:
            info["document_list"] = [
                {"doc_id": d.doc_id, "pages": d.num_pages, "filename": d.metadata.get("filename")} for d in documents
            ]
        print(json.dumps(info, indent=2))
        return 0
    shown = {
        **info,
        "model": info["model"] or "none (precomputed pages)",
        "family": info["family"] or "n/a",
        "window": ",".join(map(str, info["window"])) if info["window"] else "n/a",
        "keep_ratio": "n/a" if info["keep_ratio"] is None else info["keep_ratio"],
        "vectors_per_page": info["vectors_per_page"] if stats.pages else "n/a",
        "bytes_on_disk": "n/a" if info["bytes_on_disk"] is None else f"{info['bytes_on_disk']:,}",
        "bytes_per_page": per_page(stats.bytes_per_page),
        "image_bytes": f"{info['image_bytes']:,}",
    }
    for key, value in shown.items():
        if key != "document_ids":
            print(f"{key:>17}: {'n/a' if value is None else value}")
    if args.documents:
        print()
        if not documents:
            print("no documents")
        for d in documents:
            print(f"{d.doc_id}  {d.num_pages:>4} pages  {d.metadata.get('filename', '')}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from ..index import SAPIndex
    from ..index.errors import DocumentNotFoundError

    read_manifest(args.index)
    with SAPIndex.open(args.index) as index:
        try:
            pages = index.delete(args.doc_id)
        except DocumentNotFoundError as exc:
            raise DocumentNotFoundError(f"{exc}; {DOCUMENTS_HINT.replace('DIR', str(args.index))}") from exc
    print(f"deleted {args.doc_id}: {pages} pages")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..encoders.loading import load_encoder
    from ..index import SAPIndex
    from ..ingest.images import load_image
    from ..viz import save_anchor_overlay

    spec, window = recorded_model(args.index, read_manifest(args.index))
    with SAPIndex.open(args.index, read_only=True) as index:  # page checked before the model loads
        document = index.document(args.doc)
        if args.page > document.num_pages:
            raise InvalidInputError(f"document {args.doc} has pages 1..{document.num_pages}, not {args.page}")
        image_path = document.image_paths[args.page - 1]
        if image_path is None:
            raise InvalidInputError(f"the index keeps no image of page {args.page} of {args.doc}")
        image = load_image(image_path)
        encoder = load_encoder(spec, device=args.device, window=window)
        (page,) = encoder.encode_pages([image])
        pruned = index.pruner.prune(page)
        keep_ratio = index.manifest.keep_ratio
    name = document.metadata.get("filename") if isinstance(document.metadata.get("filename"), str) else args.doc
    path = save_anchor_overlay(
        args.out, image, page, pruned, document=name, page_number=args.page, keep_ratio=keep_ratio
    )
    print(f"wrote {path} ({image.size[0]}x{image.size[1]}, {pruned.num_kept} of {page.num_tokens} patches kept)")
    return 0
