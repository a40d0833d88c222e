"""``sap-rag index | search``: build an index of PDFs and images and search it from the command line
(``info``, ``delete`` and ``show`` are in :mod:`.inspect_cmds`).

Every argument that can be checked without a model is checked first (at parsing, then against the
index's manifest), so a mistake is answered at once and a failed first ``index`` run leaves no
index behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from . import scale_cmds
from ._common import (
    DEFAULT_MODEL,
    MAX_K,
    TINY_NOTE,
    dpi,
    help_formatter,
    per_page,
    positive_int,
    query,
    ratio,
    read_manifest,
    recorded_model,
    verbose_parent,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    common = [verbose_parent()]
    p = subparsers.add_parser(
        "index",
        help="add PDFs and images (files or folders) to an index, creating it if needed",
        description="Add PDFs and images to an index. Each file is one document whose id is a hash of its "
        "content: re-adding a file is a no-op and a changed file replaces its old pages. Folders are searched "
        "recursively; a symbolic link inside a folder is followed only to a file inside that folder (links "
        "out of it are skipped with a warning). Pages more than 20 times longer than wide (or wider than "
        "long) are padded with white to that ratio, so they stay searchable.",
        epilog=f"""supported types: .pdf .png .jpg .jpeg .tif .tiff .bmp .gif .webp

examples:
  sap-rag index examples/data --index ./idx                       # default model: {DEFAULT_MODEL}
  sap-rag index reports/ scans/page1.png --index ./idx --model vidore/colqwen2-v1.0
  sap-rag index reports/ --index ./idx --include '*.pdf' --skip-errors""",
        formatter_class=help_formatter,
        parents=common,
    )
    p.add_argument("paths", nargs="+", type=Path, help="files and/or folders (searched recursively)")
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--model", help=f"model for a new index (default {DEFAULT_MODEL}); must match an existing one")
    p.add_argument(
        "--keep-ratio", type=ratio("--keep-ratio"), default=0.1, help="share of visual tokens kept, new index only"
    )
    p.add_argument("--window", help="SAP layer window for a new index: a calibration .json or layers like 11,12,13")
    p.add_argument("--include", action="append", help="filename pattern for folder contents (repeatable)")
    p.add_argument("--skip-errors", action="store_true", help="index readable files, report unreadable ones")
    p.add_argument("--dpi", type=dpi, default=144, help="PDF rendering resolution (default 144)")
    p.add_argument("--batch-size", type=positive_int("--batch-size"), default=4, help="pages per forward pass")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    _wait_argument(p)
    scale_cmds.add_ray_arguments(p)
    p.set_defaults(func=run_index)

    p = subparsers.add_parser(
        "search",
        help="search an index",
        description="Search an index with a text query; prints the best pages (image paths are absolute).",
        epilog="""examples:
  sap-rag search "revenue by region in 2023" --index ./idx
  sap-rag search "energy use" --index ./idx -k 3 --filter filename=energy_outlook.pdf --json""",
        formatter_class=help_formatter,
        parents=common,
    )
    p.add_argument("query", type=query, help="the question or keywords")
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("-k", type=positive_int("-k", MAX_K), default=5, help="number of pages (default 5)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="metadata filter (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--device", help="cuda, cpu, ...")
    _wait_argument(p)
    p.set_defaults(func=run_search)


DEFAULT_WAIT = 60.0
"""Seconds a command waits for other processes using the index (a writer, or readers for a writer)."""

SNIPPET_CHARS = 100
"""Characters of a hit's page text that ``search`` prints."""


def _wait_argument(p: argparse.ArgumentParser) -> None:
    def seconds(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number >= 0 or number == float("inf"):
            raise argparse.ArgumentTypeError(f"--wait takes a number of seconds >= 0, got {value!r}")
        return number

    p.add_argument(
        "--wait",
        type=seconds,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"how long to wait for other processes using the index (default {DEFAULT_WAIT:g}; 0: fail at once)",
    )


def _window(value: str | None) -> Any:
    if value is None or value.endswith(".json"):
        return value
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise InvalidInputError(f"--window takes a calibration .json or layers like 11,12,13, got {value!r}") from None


def _open(
    path: Path,
    device: str | None = None,
    model: str | None = None,
    *,
    read_only: bool = False,
    queries: bool = False,
    timeout: float = DEFAULT_WAIT,
):
    """Open the index at ``path`` with its own encoder (on ``device``); refuse a different ``model``.

    ``read_only``: a shared open, so several searching processes can use the index at once.
    ``queries``: only query strings will be encoded: a small model's cached compiled query side
    will do (see :mod:`sap_rag.encoders.compiled`), which starts without transformers.
    ``timeout``: seconds to wait for other processes using the index."""
    spec, window = recorded_model(path, read_manifest(path), model)
    from ..index import SAPIndex

    if queries:
        from ..encoders.compiled import load_query_encoder

        encoder: Any = load_query_encoder(spec, device=device, window=window)
    else:
        from ..encoders.loading import load_encoder

        encoder = load_encoder(spec, device=device, window=window)
    return SAPIndex.open(path, encoder=encoder, read_only=read_only, timeout=timeout), spec


def run_index(args: argparse.Namespace) -> int:
    from ..ingest.documents import DEFAULT_INCLUDE, discover

    include = args.include or DEFAULT_INCLUDE
    discover(args.paths, include)  # a missing path or nothing indexable is refused before any model loads
    from ..index.manifest import MANIFEST_NAME

    if (args.index / MANIFEST_NAME).exists() or (args.index / MANIFEST_NAME).is_symlink():
        return _add(args, include, new=False)
    if args.index.exists() and (not args.index.is_dir() or _has_files(args.index)):
        raise InvalidInputError(
            f"{args.index} exists and is not an empty folder or a sap-rag index; choose another --index"
        )
    return _add(args, include, new=True)


def _has_files(folder: Path) -> bool:
    """Whether ``folder`` holds anything but the lock files a racing first run makes first."""
    return any(child.name not in (".lock", ".lock.wait") or not child.is_file() for child in folder.iterdir())


def _add(args: argparse.Namespace, include: Any, *, new: bool) -> int:
    """Add the files; a first run that fails removes the index it created (and only that: another
    run that made the same new index meanwhile keeps it, and this run then adds to it)."""
    from ..encoders.loading import load_encoder
    from ..index import IndexExistsError, IndexLockedError, SAPIndex
    from ..index.lifecycle import discard_new
    from ..index.manifest import MANIFEST_NAME

    if new:
        spec = args.model or DEFAULT_MODEL
        encoder = load_encoder(spec, device=args.device, window=_window(args.window), batch_size=args.batch_size)
        try:
            index = SAPIndex.create(args.index, encoder=encoder, keep_ratio=args.keep_ratio, timeout=args.wait)
        except IndexExistsError:
            if not (args.index / MANIFEST_NAME).is_file():
                raise
            # Another run created it while this one started: add to it, as a later run would.
            new = False
            index = SAPIndex.open(args.index, encoder=encoder, timeout=args.wait)
    else:
        index, spec = _open(args.index, args.device, args.model, timeout=args.wait)
    if spec.startswith("tiny:"):
        print(TINY_NOTE)
    with index:
        try:
            report = scale_cmds.add_documents(
                index,
                args,
                include=include,
                skip_errors=args.skip_errors,
                dpi=args.dpi,
                batch_size=args.batch_size,
                show_progress=True,
            )
            _print_skipped(report)
            if new and not report.added:
                raise InvalidInputError("no file could be read, so no index was created; fix the files listed above")
        except BaseException:
            if new:
                discard_new(index)  # still under this run's lock: nobody else can have used it
            raise
        opened_stats = index.stats()
    if report.added and index.encoder is not None:
        from ..encoders.compiled import remember_queries

        remember_queries(index.encoder)  # so that the first search starts fast too
    # Measured on the closed index, as 'sap-rag info' measures it, so both print the same figure
    # (unless another process took the index meanwhile: then as measured before closing it).
    try:
        with SAPIndex.open(args.index, timeout=min(args.wait, 5.0)) as closed:
            stats = closed.stats()
    except IndexLockedError:
        stats = opened_stats
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
    print(
        f"index: {stats.documents} documents, {stats.pages} pages, "
        f"{per_page(stats.bytes_per_page)} bytes per page on disk"
    )
    return 0


def _print_skipped(report: Any) -> None:
    if report.skipped:
        print(f"skipped {len(report.skipped)} unreadable files:", file=sys.stderr)
        for error in report.skipped:
            print(f"  {error.message}", file=sys.stderr)


def _parse_filters(items: list[str]) -> dict[str, Any] | None:
    """``--filter KEY=VALUE`` items as a filter (a repeated key matches any of its values), checked."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInputError(f"--filter takes KEY=VALUE, got {item!r}")
        parsed: Any = int(value) if key == "page_number" and value.isdigit() else value
        if key in out:
            previous = out[key]
            out[key] = [*previous, parsed] if isinstance(previous, list) else [previous, parsed]
        else:
            out[key] = parsed
    from ..index.filters import parse_filter

    try:
        parse_filter(out)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--filter: {exc}") from exc
    return out


def run_search(args: argparse.Namespace) -> int:
    filters = _parse_filters(args.filter)  # checked before the model loads
    index, spec = _open(args.index, args.device, read_only=True, queries=True, timeout=args.wait)
    with index:
        hits = index.search(args.query, k=args.k, filter=filters)
    if args.json:
        rows = [
            {
                "rank": rank,
                "score": hit.score,
                "relevance": hit.relevance,
                "page_id": hit.page_id,
                "doc_id": hit.doc_id,
                "page_number": hit.page_number,
                "text": hit.text,
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
    print(f"{'rank':>4}  {'score':>8}  {'relevance':>9}  {'page':>4}  {'document':24}  file")
    for rank, hit in enumerate(hits, 1):
        name = hit.metadata.get("filename", "")
        print(f"{rank:>4}  {hit.score:8.3f}  {hit.relevance:9.3f}  {hit.page_number:>4}  {hit.doc_id[:24]:24}  {name}")
        print(f"      {snippet(hit.text)}")
    return 0


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """A page text on one line (whitespace collapsed), cut to ``limit`` characters with an ellipsis.

    >>> snippet("Revenue\\n  by   region", 12)
    'Revenue by …'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + " …"
