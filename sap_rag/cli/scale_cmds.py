"""``sap-rag export | import`` and the ``--ray`` options of ``sap-rag index``.

Wiring (in ``cli/main.py`` and ``cli/index_cmds.py``): ``scale_cmds.register`` adds the two
commands; ``scale_cmds.add_ray_arguments(p)`` adds ``--ray/--workers/--gpus-per-worker`` to the
``index`` parser, and ``run_index`` calls ``scale_cmds.add_documents(index, args, ...)`` instead of
``index.add_documents(...)``, which runs on Ray when ``--ray`` is given.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

__all__ = ["add_documents", "add_ray_arguments", "register", "run_export", "run_import"]


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write an index to Parquet (vectors, payloads, images), to import elsewhere",
        description="Write every page of an index (pruned, pooled and mean vectors, positions, metadata, payload, "
        "images) to a new directory of Parquet files. Nothing is re-encoded on import.",
        epilog="""examples:
  sap-rag export --index ./idx --out ./idx-export
  sap-rag export --index ./idx --out ./idx-export --images reference   # images read from ./idx on import""",
        formatter_class=_formatter,
    )
    p.add_argument("--index", required=True, type=Path, help="index directory")
    p.add_argument("--out", required=True, type=Path, help="new export directory (outside the index)")
    p.add_argument(
        "--images",
        choices=["embed", "reference", "none"],
        default="embed",
        help="copy page images into the export (default), reference the index's files, or leave them out",
    )
    p.add_argument("--qdrant-api-key", help="API key of the index's Qdrant server (or env QDRANT_API_KEY)")
    p.set_defaults(func=run_export)

    p = subparsers.add_parser(
        "import",
        help="build a new index from an export, embedded or on a Qdrant server",
        description="Build a new index from an export directory, with the source's manifest (model, pruner, "
        "settings), on the embedded engine or on a Qdrant server or cluster. Until it finishes, the new index says "
        "its import is incomplete; if the import is stopped (killed, Ctrl-C), run the same command again to resume "
        "it. An export is checked as untrusted input: a damaged or crafted one is refused and nothing is created.",
        epilog="""examples:
  sap-rag import ./idx-export --index ./idx2                                  # embedded
  sap-rag import ./idx-export --index ./idx-cluster --qdrant-url http://qdrant:6333 \\
      --shards 6 --replicas 2 --on-disk-vectors --payload-index metadata.source=keyword""",
        formatter_class=_formatter,
    )
    p.add_argument("export", type=Path, help="export directory (from sap-rag export)")
    p.add_argument("--index", required=True, type=Path, help="new index directory")
    p.add_argument("--qdrant-url", help="put the vectors on this Qdrant server or cluster")
    p.add_argument("--qdrant-path", help="or in qdrant-client local mode at this directory")
    p.add_argument("--collection", help="the server collection name (default: derived from the index directory)")
    p.add_argument("--qdrant-api-key", help="API key of the Qdrant server (or env QDRANT_API_KEY)")
    p.add_argument("--images-from", type=Path, help="the source index, for an export made with --images reference")
    add_collection_arguments(p)
    p.set_defaults(func=run_import)


def add_collection_arguments(p: argparse.ArgumentParser) -> None:
    """Options of a new Qdrant server collection (see docs/scale.md)."""
    group = p.add_argument_group("Qdrant cluster collection")
    group.add_argument("--shards", type=int, help="shard number (fixed at creation)")
    group.add_argument("--replicas", type=int, help="replication factor")
    group.add_argument("--write-consistency", type=int, help="replicas that must acknowledge a write")
    group.add_argument("--on-disk-vectors", action="store_true", help="keep anchors and pooled vectors memory-mapped")
    group.add_argument("--on-disk-payload", action="store_true", help="keep payloads on disk")
    group.add_argument(
        "--payload-index",
        action="append",
        default=[],
        metavar="KEY=SCHEMA",
        help="index a filtered payload key, e.g. metadata.source=keyword (repeatable)",
    )


def collection_options(args: argparse.Namespace) -> Any:
    """A ``CollectionOptions`` from the parsed arguments, or None when none was given."""
    indexes = {}
    for item in args.payload_index:
        key, sep, schema = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--payload-index takes KEY=SCHEMA (e.g. metadata.source=keyword), got {item!r}")
        indexes[key.strip()] = schema.strip()
    given = (args.shards, args.replicas, args.write_consistency)
    if not indexes and all(v is None for v in given) and not args.on_disk_vectors and not args.on_disk_payload:
        return None
    from ..index.backends.server import CollectionOptions

    return CollectionOptions(
        shard_number=args.shards,
        replication_factor=args.replicas,
        write_consistency_factor=args.write_consistency,
        on_disk_vectors=True if args.on_disk_vectors else None,
        on_disk_payload=True if args.on_disk_payload else None,
        payload_indexes=indexes,
    )


def _api_key(args: argparse.Namespace) -> str | None:
    return args.qdrant_api_key or os.environ.get("QDRANT_API_KEY")


def run_export(args: argparse.Namespace) -> int:
    from ..index import SAPIndex
    from ..transfer import export_index

    with SAPIndex.open(args.index, qdrant_api_key=_api_key(args)) as index:
        report = export_index(index, args.out, images=args.images, show_progress=True)
    print(
        f"exported {report.documents} documents, {report.pages} pages, {report.vectors} vectors, "
        f"{report.images} images to {report.path} ({report.bytes / 1e6:.1f} MB) in {report.seconds:.1f} s"
    )
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ..transfer import import_index

    if args.qdrant_url and args.qdrant_path:
        raise InvalidInputError("give --qdrant-url or --qdrant-path, not both")
    create: dict[str, Any] = {}
    if args.qdrant_url:
        create.update(qdrant_url=args.qdrant_url, qdrant_api_key=_api_key(args))
    elif args.qdrant_path:
        from ..index.backends.server import connect

        create.update(client=connect(path=args.qdrant_path))
    if args.collection:
        if not create:
            raise InvalidInputError("--collection needs --qdrant-url or --qdrant-path")
        create["collection"] = args.collection
    options = collection_options(args)
    if options is not None:
        if not create:
            raise InvalidInputError("the collection options (--shards, ...) need --qdrant-url or --qdrant-path")
        create["collection_options"] = options
    try:
        report = import_index(args.export, args.index, images_from=args.images_from, show_progress=True, **create)
    finally:
        if "client" in create:
            create["client"].close()
    resumed = f" (resumed: {report.resumed} were already there)" if report.resumed else ""
    print(
        f"imported {report.documents} documents{resumed}, {report.pages} pages, {report.vectors} vectors, "
        f"{report.images} images into {report.path} in {report.seconds:.1f} s"
    )
    return 0


# --- sap-rag index --ray -------------------------------------------------------------------------


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]``, ``--workers``, ``--gpus-per-worker`` for ``sap-rag index``."""
    group = p.add_argument_group("distributed indexing (pip install 'sap-rag[ray]')")
    group.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray: a cluster address (auto, ray://head:10001), or none for a local Ray",
    )
    group.add_argument("--workers", type=int, default=1, help="encoder actors, one model each (default 1)")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per encoder actor (default 0)")


def add_documents(index: Any, args: argparse.Namespace, **options: Any) -> Any:
    """``index.add_documents(args.paths, **options)``, on Ray when ``--ray`` was given; same report."""
    address = getattr(args, "ray", None)
    if address is None:
        if getattr(args, "workers", 1) != 1 or getattr(args, "gpus_per_worker", 0.0):
            raise InvalidInputError("--workers and --gpus-per-worker need --ray")
        return index.add_documents(args.paths, **options)
    from ..distributed import RayOptions, index_with_ray

    ray = RayOptions(
        address=None if address == "local" else address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        device=getattr(args, "device", None),
        qdrant_api_key=os.environ.get("QDRANT_API_KEY"),
    )
    return index_with_ray(index, args.paths, ray=ray, **options)
