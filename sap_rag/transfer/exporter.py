"""Writing an index to Parquet (see :mod:`sap_rag.transfer.format`), one batch of pages at a time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MissingDependencyError
from ..index._fs import atomic_write_bytes
from ..index.registry import page_point_id
from ..progress import progress
from .format import (
    DOCUMENTS_FILE,
    EXPORT_FILE,
    EXPORT_FORMAT,
    PAGES_FILE,
    STORE_FIELDS,
    ImageMode,
    TransferError,
    matrices_to_arrow,
    pages_schema,
)

if TYPE_CHECKING:
    from ..index.index import SAPIndex
    from ..index.registry import DocumentRecord

logger = logging.getLogger(__name__)

__all__ = ["ExportReport", "export_index"]

ROW_GROUP_PAGES = 256
"""Pages read from the engine and written per Parquet row group, at most: bounds the export's memory."""

ROW_GROUP_VALUES = 1 << 23
"""Vector components (anchors and pooled) from which a row group is written before it has
:data:`ROW_GROUP_PAGES` pages: an import decodes a row group at a time (32 MB of float32 here)."""

ROW_GROUP_BYTES = 64 << 20
"""Embedded image bytes from which a row group is written early."""


@dataclass
class ExportReport:
    """What :func:`export_index` wrote: ``documents``, ``pages``, ``vectors`` (anchors), ``images``
    (embedded or referenced), ``bytes`` of the Parquet files and ``seconds``."""

    path: Path
    documents: int = 0
    pages: int = 0
    vectors: int = 0
    images: int = 0
    bytes: int = 0
    seconds: float = 0.0


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("export and import need pyarrow: pip install 'pyarrow>=14'") from exc
    return pa, pq


def committed_records(index: SAPIndex) -> list[DocumentRecord]:
    """The index's committed documents with their generations (which locate their points)."""
    return index._store.registry.documents()


def export_index(
    index: SAPIndex,
    out: str | os.PathLike,
    *,
    images: ImageMode | str = ImageMode.EMBED,
    show_progress: bool = False,
) -> ExportReport:
    """Write every committed page of ``index`` to a new export directory ``out``.

    The export holds the pruned, pooled and mean vectors exactly as stored, positions, token
    counts, metadata, every other payload field verbatim, and the page images (``images="embed"``),
    their names (``"reference"``: the import reads them from this index's ``images/``) or nothing
    (``"none"``). :func:`~sap_rag.transfer.import_index` builds an index from it on any backend.

    Page numbers are exported as they are (gaps left by ``delete_pages`` included), with each
    document's ``added_at``, so page ids and times survive the import. A failed export removes
    what it wrote.

    Raises:
        TransferError: ``out`` exists and is not an empty directory, or lies inside the index
            (links resolved: the engine deletes folders it does not know under its own).
    """
    pa, pq = _pyarrow()
    mode = ImageMode.parse(images)
    started = time.perf_counter()
    root = Path(out)
    _check_outside(root, Path(index.path))
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise TransferError(f"{root} exists and is not an empty directory; export into a new directory")
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        return _export(index, root, mode, show_progress, started, pa, pq)
    except BaseException:
        # A failed export leaves nothing: the files it wrote (and the folder, if it made it) go.
        for name in (PAGES_FILE, DOCUMENTS_FILE, "manifest.json", EXPORT_FILE):
            (root / name).unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                root.rmdir()
        raise


def _check_outside(out: Path, index_path: Path) -> None:
    """Refuse an export folder inside the index (the engine deletes folders it does not know
    under its own, and the index's files are no place for a copy of it), links resolved."""
    target = out.resolve()
    inside = index_path.resolve()
    if target == inside or target.is_relative_to(inside):
        raise TransferError(
            f"{out} is inside the index {index_path} (resolved: {target}); export to a folder outside the index"
        )


def _export(
    index: SAPIndex, root: Path, mode: ImageMode, show_progress: bool, started: float, pa: Any, pq: Any
) -> ExportReport:
    """The body of :func:`export_index` (``root`` is an empty directory)."""
    report = ExportReport(path=root)
    dim = index.dim
    records = committed_records(index)
    total = sum(r.num_pages for r in records)
    schema = pages_schema(dim)
    rows: list[dict[str, Any]] = []
    values = image_bytes = 0
    with (
        pq.ParquetWriter(root / PAGES_FILE, schema) as writer,
        progress(total=total, desc="exporting", unit="page", enabled=show_progress) as bar,
    ):
        for record in records:
            numbers = record.page_numbers  # with gaps where pages were deleted: page ids travel as they are
            points = index.backend.retrieve_points([page_point_id(record.gen, n) for n in numbers])
            found = [int(p.payload.get("page_number", 0)) for p in points]
            if found != numbers:
                raise TransferError(
                    f"document {record.doc_id!r} has pages {numbers} in the registry but {found} in the engine; run "
                    "`sap-rag check --repair` (SAPIndex.check) before exporting"
                )
            for point in points:
                row = _page_row(index, point, mode, report)
                rows.append(row)
                values += row["anchors"].size + (0 if row["pooled"] is None else row["pooled"].size)
                image_bytes += len(row["image"] or b"")
                if len(rows) >= ROW_GROUP_PAGES or values >= ROW_GROUP_VALUES or image_bytes >= ROW_GROUP_BYTES:
                    writer.write_table(_table(pa, schema, rows, dim))
                    rows, values, image_bytes = [], 0, 0
            report.documents += 1
            report.pages += len(numbers)
            report.vectors += record.num_vectors
            bar.update(len(numbers))
        if rows:
            writer.write_table(_table(pa, schema, rows, dim))
    documents = pa.table(
        {
            "doc_id": pa.array([r.doc_id for r in records], pa.string()),
            "metadata": pa.array([json.dumps(r.metadata, sort_keys=True) for r in records], pa.string()),
            "num_pages": pa.array([r.num_pages for r in records], pa.int32()),
            "num_vectors": pa.array([r.num_vectors for r in records], pa.int64()),
            "added_at": pa.array([r.added_at for r in records], pa.float64()),
        }
    )
    pq.write_table(documents, root / DOCUMENTS_FILE)
    atomic_write_bytes(root / "manifest.json", index.manifest.to_json().encode())
    summary = {
        "export_format": EXPORT_FORMAT,
        "documents": report.documents,
        "pages": report.pages,
        "vectors": report.vectors,
        "dim": dim,
        "images": mode.value,
        "source_index": str(Path(index.path).resolve()),
        "export_id": uuid.uuid4().hex,
    }
    atomic_write_bytes(root / EXPORT_FILE, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    report.bytes = sum((root / name).stat().st_size for name in (PAGES_FILE, DOCUMENTS_FILE))
    report.seconds = time.perf_counter() - started
    logger.info(
        "exported %d documents (%d pages, %d images) from %s to %s in %.1f s",
        report.documents,
        report.pages,
        report.images,
        index.path,
        root,
        report.seconds,
    )
    return report


def _page_row(index: SAPIndex, point: Any, mode: ImageMode, report: ExportReport) -> dict[str, Any]:
    payload = point.payload
    extra = {k: v for k, v in payload.items() if k not in STORE_FIELDS and k not in ("num_tokens", "positions")}
    name = payload.get("image")
    data = None
    if name and mode is ImageMode.EMBED:
        data = index._store.images.path(name).read_bytes()
    if name and mode is not ImageMode.NONE:
        report.images += 1
    return {
        "doc_id": payload["doc_id"],
        "page_number": int(payload["page_number"]),
        "anchors": point.anchors,
        "pooled": point.pooled,
        "mean": point.summary,
        "num_tokens": payload.get("num_tokens"),
        "positions": payload.get("positions"),
        "payload": json.dumps(extra, sort_keys=True),
        "image_name": name if mode is not ImageMode.NONE else None,
        "image": data,
    }


def _table(pa: Any, schema: Any, rows: list[dict[str, Any]], dim: int) -> Any:
    import numpy as np

    means = np.stack([r["mean"] for r in rows]).astype(np.float32)
    columns = {
        "doc_id": pa.array([r["doc_id"] for r in rows], pa.string()),
        "page_number": pa.array([r["page_number"] for r in rows], pa.int32()),
        "anchors": matrices_to_arrow([r["anchors"] for r in rows], dim),
        "pooled": matrices_to_arrow([r["pooled"] for r in rows], dim),
        "mean": pa.FixedSizeListArray.from_arrays(pa.array(means.reshape(-1), pa.float32()), dim),
        "num_tokens": pa.array([r["num_tokens"] for r in rows], pa.int64()),
        "positions": pa.array([r["positions"] for r in rows], pa.list_(pa.float64())),
        "payload": pa.array([r["payload"] for r in rows], pa.string()),
        "image_name": pa.array([r["image_name"] for r in rows], pa.string()),
        "image": pa.array([r["image"] for r in rows], pa.binary()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
