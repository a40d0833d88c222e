"""Building a new index from an export (see :mod:`sap_rag.transfer.format`), one document at a time."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..index.backends.factory import collection_options
from ..index.checks import check_doc_id
from ..index.errors import IndexFormatError
from ..index.filters import validate_metadata
from ..index.manifest import Manifest
from ..index.store import StagedPage
from ..index.vectors import as_matrix, to_storage
from ..progress import progress
from .exporter import _pyarrow
from .format import (
    DOCUMENTS_FILE,
    EXPORT_FILE,
    EXPORT_FORMAT,
    PAGES_FILE,
    STORE_FIELDS,
    ImageMode,
    TransferError,
    check_image_name,
    matrices_from_arrow,
)

logger = logging.getLogger(__name__)

__all__ = ["ImportReport", "import_index", "read_export_info"]

_READ_BATCH = 256


@dataclass
class ImportReport:
    """What :func:`import_index` built: the new index's ``path``, ``documents``, ``pages``,
    ``vectors``, ``images`` stored, and ``seconds``."""

    path: Path
    documents: int = 0
    pages: int = 0
    vectors: int = 0
    images: int = 0
    seconds: float = 0.0


def read_export_info(source: str | os.PathLike) -> tuple[dict[str, Any], Manifest]:
    """The export's ``export.json`` and the source index's manifest, validated."""
    root = Path(source)
    info_path = root / EXPORT_FILE
    if not info_path.is_file() or info_path.is_symlink():
        raise TransferError(f"{root} is not a sap-rag export (no {EXPORT_FILE}); write one with `sap-rag export`")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise TransferError(f"{info_path} is not valid JSON ({exc}); the export is damaged") from exc
    if not isinstance(info, dict) or not isinstance(info.get("export_format"), int):
        raise TransferError(f"{info_path} has no integer export_format; the export is damaged")
    if info["export_format"] > EXPORT_FORMAT:
        raise TransferError(
            f"{root} has export format {info['export_format']}, this sap-rag reads up to {EXPORT_FORMAT}; "
            "upgrade sap-rag"
        )
    for name in (PAGES_FILE, DOCUMENTS_FILE, "manifest.json"):
        if not (root / name).is_file() or (root / name).is_symlink():
            raise TransferError(f"{root} has no {name}; the export is incomplete")
    try:
        manifest = Manifest.read(root)
    except IndexFormatError as exc:
        raise TransferError(f"the export's manifest is unusable: {exc}") from exc
    return info, manifest


def import_index(
    source: str | os.PathLike,
    path: str | os.PathLike,
    *,
    images_from: str | os.PathLike | None = None,
    show_progress: bool = False,
    **create_options: Any,
) -> ImportReport:
    """Build a new index at ``path`` from the export ``source``, without re-encoding anything.

    The new index gets the source's manifest (encoder, pruner, storage, staged-search settings)
    with its own backend, and the same documents, pages, vectors and payloads, so it returns the
    same search results. Each document is written all or nothing; a failure leaves the documents
    written before it (reopen the new index to inspect, or delete it and import again).

    Args:
        source: an export directory (:func:`~sap_rag.transfer.export_index`).
        path: the new index's directory (must not exist or be empty).
        images_from: for an export made with ``images="reference"``: the source index directory
            (default: the one recorded in the export).
        show_progress: a progress bar over pages.
        create_options: where the vectors go, as for :meth:`SAPIndex.create`: ``qdrant_url=``,
            ``client=``, ``collection=``, ``qdrant_api_key=``, ``indexing_threshold_kb=`` (and
            ``collection_options=``, a ``CollectionOptions`` for a new server collection).
            Default: embedded.

    Raises:
        TransferError: ``source`` is not a readable export, or its content is inconsistent.
    """
    from ..index.index import SAPIndex

    started = time.perf_counter()
    info, manifest = read_export_info(source)
    mode = ImageMode.parse(info.get("images", "none"))
    image_root = None
    if mode is ImageMode.REFERENCE and manifest.store_images:
        image_root = Path(images_from or info.get("source_index", "")) / "images"
        if not image_root.is_dir():
            raise TransferError(
                f"the export references page images in {image_root}, which does not exist; pass images_from=<the "
                "source index directory>, or export again with images='embed'"
            )
    two = manifest.two_stage
    created_dir = not Path(path).exists()
    options = create_options.pop("collection_options", None)
    with collection_options(options):
        index = _create(SAPIndex, path, manifest, two, create_options)
    report = ImportReport(path=Path(path))
    try:
        # The source's manifest with the new backend: encoder, pruner, staged-search settings carry over.
        carried = dataclasses.replace(manifest, backend=index.manifest.backend)
        carried.write(index.path)
        index.manifest = carried
        total = int(info.get("pages", 0)) or None
        with progress(total=total, desc="importing", unit="page", enabled=show_progress) as bar:
            for doc_id, metadata, pages in _documents(Path(source), manifest, image_root):
                with index._mutex:
                    record = index._store.write(doc_id, pages, metadata)
                report.documents += 1
                report.pages += record.num_pages
                report.vectors += record.num_vectors
                report.images += sum(1 for name in record.images if name)
                bar.update(record.num_pages)
        if report.documents != int(info.get("documents", report.documents)):
            raise TransferError(
                f"the export says it holds {info.get('documents')} documents but {report.documents} were read; "
                "the export is damaged"
            )
        index.optimize()
    except BaseException:
        _discard(index, Path(path), created_dir)
        raise
    index.close()
    if report.documents != int(info.get("documents", report.documents)):
        raise TransferError(
            f"the export says it holds {info.get('documents')} documents but {report.documents} were read; "
            "the export is damaged"
        )
    report.seconds = time.perf_counter() - started
    logger.info(
        "imported %d documents (%d pages) into %s in %.1f s", report.documents, report.pages, path, report.seconds
    )
    return report


def _create(cls: Any, path: Any, manifest: Manifest, two: dict[str, Any], create_options: dict[str, Any]) -> Any:
    """A new, empty index with the export's settings."""
    return cls.create(
        path,
        dim=manifest.dim,
        storage=manifest.storage,
        two_stage=two.get("mode", "auto"),
        two_stage_threshold=int(two.get("threshold", 1)),
        prefetch=int(two["prefetch"]) if "prefetch" in two else None,
        coarse=int(two.get("coarse", 1500)),
        pooled_vectors=manifest.pooled_vectors,
        oversampling=manifest.oversampling,
        store_images=manifest.store_images,
        **create_options,
    )


def _discard(index: Any, root: Path, created_dir: bool) -> None:
    """Undo a failed import: a failed call creates nothing (the new collection and directory go)."""
    backend = index.backend
    try:
        if getattr(backend, "kind", "") == "qdrant":
            backend.client.delete_collection(backend.collection)
    except Exception:  # pragma: no cover - best effort while already failing
        logger.exception("could not delete the collection of the failed import")
    finally:
        index.close()
    if created_dir:
        shutil.rmtree(root, ignore_errors=True)
    else:
        for entry in root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _documents(
    root: Path, manifest: Manifest, image_root: Path | None
) -> Iterator[tuple[str, dict[str, Any], list[StagedPage]]]:
    """Each document of the export with its metadata and its pages ready to store, in export order."""
    _, pq = _pyarrow()
    try:
        documents = pq.read_table(root / DOCUMENTS_FILE).to_pylist()
    except Exception as exc:
        raise TransferError(f"{root / DOCUMENTS_FILE} is not a readable Parquet file ({exc})") from exc
    expected = {}
    for row in documents:
        doc_id = _checked(check_doc_id, row.get("doc_id"), "a document id")
        try:
            metadata = validate_metadata(json.loads(row.get("metadata") or "{}"))
        except (ValueError, TypeError) as exc:
            raise TransferError(f"document {doc_id!r} has invalid metadata in the export ({exc})") from exc
        expected[doc_id] = (int(row.get("num_pages") or 0), metadata)
    current: str | None = None
    pages: list[StagedPage] = []
    seen: set[str] = set()
    for row in _page_rows(root, manifest, image_root):
        doc_id = row.pop("doc_id")
        if doc_id != current:
            if current is not None:
                yield current, expected[current][1], _complete(current, pages, expected)
            if doc_id in seen or doc_id not in expected:
                raise TransferError(f"the export's pages of {doc_id!r} are not one run of a listed document")
            seen.add(doc_id)
            current, pages = doc_id, []
        if row.pop("page_number") != len(pages) + 1:
            raise TransferError(f"the export's pages of {doc_id!r} are out of order; the export is damaged")
        pages.append(row["page"])
    if current is not None:
        yield current, expected[current][1], _complete(current, pages, expected)
    missing = set(expected) - seen
    if missing:
        raise TransferError(f"the export lists documents without pages: {sorted(missing)[:5]}")


def _complete(doc_id: str, pages: list[StagedPage], expected: dict[str, tuple[int, Any]]) -> list[StagedPage]:
    if len(pages) != expected[doc_id][0]:
        raise TransferError(
            f"the export has {len(pages)} pages of {doc_id!r}, its document list says {expected[doc_id][0]}"
        )
    return pages


def _page_rows(root: Path, manifest: Manifest, image_root: Path | None) -> Iterator[dict[str, Any]]:
    _, pq = _pyarrow()
    dim, storage = manifest.dim, _storage(manifest)
    pooled_expected = manifest.pooled_vectors > 0
    try:
        parquet = pq.ParquetFile(root / PAGES_FILE)
    except Exception as exc:
        raise TransferError(f"{root / PAGES_FILE} is not a readable Parquet file ({exc})") from exc
    for batch in parquet.iter_batches(batch_size=_READ_BATCH):
        anchors = matrices_from_arrow(batch.column("anchors"), dim, "anchors")
        pooled = matrices_from_arrow(batch.column("pooled"), dim, "pooled")
        means = matrices_from_arrow_single(batch.column("mean"), dim)
        columns = {name: batch.column(name).to_pylist() for name in ("doc_id", "page_number", "num_tokens")}
        columns.update({name: batch.column(name).to_pylist() for name in ("positions", "payload", "image_name")})
        image_bytes = batch.column("image").to_pylist()
        for i in range(batch.num_rows):
            doc_id = _checked(check_doc_id, columns["doc_id"][i], "a document id")
            where = f"page {columns['page_number'][i]} of {doc_id!r} in the export"
            vectors = _checked(lambda a, w=where: to_storage(as_matrix(a, dim, w), storage), anchors[i], where)
            page_pooled = None
            if pooled_expected:
                if pooled[i] is None:
                    raise TransferError(f"{where} has no pooled vectors, but the index stores them")
                page_pooled = _checked(lambda a, w=where: to_storage(as_matrix(a, dim, w), storage), pooled[i], where)
            extra = _extra(columns, i, where)
            source, image = _image(columns["image_name"][i], image_bytes[i], image_root, where)
            yield {
                "doc_id": doc_id,
                "page_number": columns["page_number"][i],
                "page": StagedPage(
                    vectors,
                    to_storage(means[i], storage),
                    extra,
                    source=source,
                    image=image,
                    pooled=page_pooled,
                ),
            }


def matrices_from_arrow_single(column: Any, dim: int) -> np.ndarray:
    """The ``mean`` column as ``(rows, dim)`` float32."""
    import pyarrow as pa

    if not pa.types.is_fixed_size_list(column.type) or column.type.list_size != dim or column.null_count:
        raise TransferError(f"the export's mean column has type {column.type}, not non-null vectors of dim {dim}")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    means = values.reshape(len(column), dim)
    if not np.isfinite(means).all():
        raise TransferError("the export's mean vectors contain NaN or infinite values; the export is damaged")
    return means


def _extra(columns: dict[str, list[Any]], i: int, where: str) -> dict[str, Any]:
    """The page's own payload fields: token count, positions and every unknown field verbatim."""
    try:
        extra = json.loads(columns["payload"][i] or "{}")
    except ValueError as exc:
        raise TransferError(f"{where} has an unreadable payload ({exc})") from exc
    if not isinstance(extra, dict) or STORE_FIELDS & set(extra):
        raise TransferError(f"{where} has a payload that is not an object or sets {sorted(STORE_FIELDS)}")
    if columns["num_tokens"][i] is not None:
        extra["num_tokens"] = int(columns["num_tokens"][i])
    if columns["positions"][i] is not None:
        extra["positions"] = list(columns["positions"][i])
    return extra


def _image(name: Any, data: bytes | None, image_root: Path | None, where: str) -> tuple[Any, Any]:
    """``(source bytes, decoded image)`` for the image store, or ``(None, None)`` for none."""
    if name is None:
        return None, None
    name = check_image_name(name)
    if data is None:
        if image_root is None:
            return None, None
        bucket = image_root / name[:2]
        file = bucket / name
        # The source index is untrusted input: no links followed, nothing outside its images/.
        if bucket.is_symlink() or file.is_symlink() or not file.is_file():
            raise TransferError(f"{where} references the image {file}, which is missing or a link")
        data = file.read_bytes()
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise TransferError(f"{where} has an unreadable image ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != name.split(".")[0]:
        raise TransferError(f"{where}: the image bytes do not match their name {name}; the export is damaged")
    return data, image


def _storage(manifest: Manifest) -> Any:
    from ..index.options import StorageType

    return StorageType(manifest.storage)


def _checked(check: Any, value: Any, what: str) -> Any:
    """``check(value)``, with the package's input errors reported as a damaged export."""
    from ..errors import InvalidInputError

    try:
        return check(value)
    except InvalidInputError as exc:
        raise TransferError(f"the export has an invalid {what}: {exc}") from exc
