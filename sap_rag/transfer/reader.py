"""Reading an export back, one document at a time, checking everything (an export is untrusted input).

:func:`read_export_info` checks what can be checked before an index is created (``export.json``,
the manifest, both Parquet schemas and every row group's size, from the footers); :func:`documents`
then streams the documents with their pages ready to store, never holding more than one document
and :data:`~sap_rag.transfer.limits.READ_BATCH` decoded pages.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..index.checks import validate_metadata
from ..index.errors import IndexFormatError
from ..index.manifest import Manifest
from ..index.registry import MAX_PAGES_PER_DOCUMENT
from ..index.store import StagedPage
from .format import (
    DOCUMENTS_FILE,
    EXPORT_FILE,
    EXPORT_FORMAT,
    PAGES_FILE,
    TransferError,
)
from .limits import MAX_TEXT_BYTES, READ_BATCH, check_row_group
from .pages import Strings, check_json, page_rows, valid_doc_id

__all__ = ["ExportDocument", "ExportInfo", "documents", "read_export_info"]

_COUNTS = ("documents", "pages", "vectors")
_DOCUMENT_COLUMNS = {"doc_id": "string", "metadata": "string", "num_pages": "integer", "num_vectors": "integer"}
_PAGE_COLUMNS = {
    "doc_id": "string",
    "page_number": "integer",
    "anchors": "vectors",
    "pooled": "vectors",
    "mean": "vector",
    "num_tokens": "integer",
    "positions": "numbers",
    "payload": "string",
    "image_name": "string",
    "image": "binary",
}


@dataclass(frozen=True)
class ExportInfo:
    """A checked export: its ``export.json`` (``info``), counts, manifest and identity (``export_id``:
    what a resumed import checks it continues the same export with)."""

    root: Path
    info: dict[str, Any]
    manifest: Manifest
    documents: int
    pages: int
    vectors: int
    export_id: str


@dataclass
class ExportDocument:
    """One document of an export, checked: its pages (``numbers``: their page numbers, ascending,
    gaps where pages were deleted) at storage precision."""

    doc_id: str
    metadata: dict[str, Any]
    added_at: float | None
    numbers: list[int]
    pages: list[StagedPage]
    images: list[str | None]

    @property
    def num_vectors(self) -> int:
        return sum(int(p.anchors.shape[0]) for p in self.pages)


def _pyarrow() -> tuple[Any, Any]:
    from .exporter import _pyarrow as load

    return load()


def _count(info: dict[str, Any], key: str, where: Path) -> int:
    value = info.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TransferError(f"{where} has {key} = {value!r}, not a count (an integer >= 0); the export is damaged")
    return value


def read_export_info(source: str | Any) -> ExportInfo:
    """The export at ``source``, checked as far as it can be without decoding its pages.

    Raises:
        TransferError: not an export, a newer format, or damaged (the message says what).
    """
    pa, pq = _pyarrow()
    root = Path(source)
    info_path = root / EXPORT_FILE
    if not info_path.is_file() or info_path.is_symlink():
        raise TransferError(f"{root} is not a sap-rag export (no {EXPORT_FILE}); write one with `sap-rag export`")
    try:
        raw = info_path.read_bytes()[: MAX_TEXT_BYTES + 1]
        if len(raw) > MAX_TEXT_BYTES:
            raise ValueError("too large")
        info = json.loads(raw)
    except (OSError, ValueError, RecursionError) as exc:
        raise TransferError(f"{info_path} is not valid JSON ({exc}); the export is damaged") from None
    version = info.get("export_format") if isinstance(info, dict) else None
    if isinstance(version, bool) or not isinstance(version, int):
        raise TransferError(f"{info_path} has no integer export_format; the export is damaged")
    if version > EXPORT_FORMAT:
        raise TransferError(f"{root} has export format {version}, this sap-rag reads up to {EXPORT_FORMAT}; upgrade it")
    counts = {key: _count(info, key, info_path) for key in _COUNTS}
    for name in (PAGES_FILE, DOCUMENTS_FILE, "manifest.json"):
        if not (root / name).is_file() or (root / name).is_symlink():
            raise TransferError(f"{root} has no {name}; the export is incomplete")
    try:
        manifest = Manifest.read(root)
    except IndexFormatError as exc:
        raise TransferError(f"the export's manifest is unusable: {exc}") from exc
    pages = _parquet(pq, root / PAGES_FILE)
    _check_schema(pa, pages.schema_arrow, _PAGE_COLUMNS, PAGES_FILE, manifest.dim)
    rows = sum(
        check_row_group(pages.metadata, g, manifest.dim, manifest.pooled_vectors)
        for g in range(pages.metadata.num_row_groups)
    )
    docs = _parquet(pq, root / DOCUMENTS_FILE)
    _check_schema(pa, docs.schema_arrow, _DOCUMENT_COLUMNS, DOCUMENTS_FILE, manifest.dim)
    if rows != counts["pages"] or docs.metadata.num_rows != counts["documents"]:
        raise TransferError(
            f"{info_path} says {counts['documents']} documents and {counts['pages']} pages, but the Parquet files "
            f"hold {docs.metadata.num_rows} and {rows}; the export is damaged"
        )
    digest = hashlib.sha256(raw)
    for name in (PAGES_FILE, DOCUMENTS_FILE, "manifest.json"):
        digest.update(f"{name}:{(root / name).stat().st_size}".encode())
    return ExportInfo(root, info, manifest, counts["documents"], counts["pages"], counts["vectors"], digest.hexdigest())


def _parquet(pq: Any, path: Path) -> Any:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:
        raise TransferError(f"{path} is not a readable Parquet file ({exc})") from None


def _kind(pa: Any, t: Any, dim: int) -> str | None:
    """The kind of an Arrow type among those the export columns take (None: none of them)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_fixed_size_list(t):
        return "vector" if t.list_size == dim and pa.types.is_floating(t.value_type) else None
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = t.value_type
        if pa.types.is_fixed_size_list(inner) and inner.list_size == dim and pa.types.is_floating(inner.value_type):
            return "vectors"
        if pa.types.is_floating(inner) or pa.types.is_integer(inner):
            return "numbers"
    return None


def _check_schema(pa: Any, schema: Any, expected: dict[str, str], name: str, dim: int) -> None:
    for column, kind in expected.items():
        if schema.get_field_index(column) < 0:
            raise TransferError(f"the export's {name} has no {column} column; the export is damaged or not sap-rag's")
        actual = schema.field(column).type
        if _kind(pa, actual, dim) != kind:
            wanted = {
                "vectors": f"a list of float vectors of dim {dim}",
                "vector": f"a float vector of dim {dim}",
                "numbers": "a list of numbers",
            }.get(kind, kind)
            raise TransferError(f"the export's {name} column {column} has type {actual}, not {wanted}")


# --- streaming documents ------------------------------------------------------------------------


def documents(export: ExportInfo, image_root: Path | None) -> Iterator[ExportDocument]:
    """Every document of the export, in export order (ascending ids), each checked and complete.

    The document list and the pages are read side by side (both are in the same order), so
    neither is held whole.
    """
    manifest = export.manifest
    listed = _listed(export.root)
    current: ExportDocument | None = None
    expected: tuple[str, dict[str, Any], int, int | None, float | None] | None = None
    previous: str | None = None
    for doc_id, number, page, name in page_rows(export.root, manifest, image_root):
        if current is None or doc_id != current.doc_id:
            if current is not None:
                yield _finished(current, expected)
            expected = next(listed, None)
            if expected is None or expected[0] != doc_id:
                raise TransferError(
                    f"the export's pages of {doc_id!r} are not one run of a listed document, in the document "
                    "list's order; the export is damaged"
                )
            if previous is not None and doc_id <= previous:
                raise TransferError(f"the export lists {doc_id!r} twice or out of order; the export is damaged")
            previous = doc_id
            current = ExportDocument(doc_id, expected[1], expected[4], [], [], [])
        if current.numbers and number <= current.numbers[-1]:
            raise TransferError(f"the export's pages of {doc_id!r} are out of order; the export is damaged")
        current.numbers.append(number)
        current.pages.append(page)
        current.images.append(name)
    if current is not None:
        yield _finished(current, expected)
    left = next(listed, None)
    if left is not None:
        raise TransferError(f"the export lists the document {left[0]!r} without pages; the export is damaged")


def _finished(doc: ExportDocument, expected: Any) -> ExportDocument:
    _, _, num_pages, num_vectors, _ = expected
    if len(doc.pages) != num_pages:
        raise TransferError(f"the export has {len(doc.pages)} pages of {doc.doc_id!r}, its document list {num_pages}")
    if num_vectors is not None and doc.num_vectors != num_vectors:
        raise TransferError(
            f"the export has {doc.num_vectors} vectors of {doc.doc_id!r}, its document list {num_vectors}"
        )
    return doc


def _listed(root: Path) -> Iterator[tuple[str, dict[str, Any], int, int | None, float | None]]:
    """``(doc_id, metadata, num_pages, num_vectors, added_at)`` of each listed document, in order."""
    _, pq = _pyarrow()
    parquet = pq.ParquetFile(root / DOCUMENTS_FILE, read_dictionary=["doc_id", "metadata"])
    has_added = parquet.schema_arrow.get_field_index("added_at") >= 0
    for batch in parquet.iter_batches(batch_size=READ_BATCH * 16):
        ids = Strings(batch.column("doc_id"), MAX_TEXT_BYTES, "doc_id")
        meta = Strings(batch.column("metadata"), MAX_TEXT_BYTES, "metadata")
        pages = batch.column("num_pages").to_pylist()
        vectors = batch.column("num_vectors").to_pylist()
        added = batch.column("added_at").to_pylist() if has_added else [None] * batch.num_rows
        for i in range(batch.num_rows):
            doc_id = valid_doc_id(ids.get(i))
            metadata = check_json(meta.get(i) or "{}", f"the metadata of {doc_id!r} in the export")
            try:
                metadata = validate_metadata(metadata)
            except InvalidInputError as exc:
                raise TransferError(f"document {doc_id!r} has invalid metadata in the export ({exc})") from None
            if not isinstance(pages[i], int) or not 0 < pages[i] <= MAX_PAGES_PER_DOCUMENT:
                raise TransferError(f"the export says {doc_id!r} has {pages[i]!r} pages; the export is damaged")
            stamp = added[i]
            if stamp is not None and (not isinstance(stamp, (int, float)) or not math.isfinite(stamp) or stamp < 0):
                raise TransferError(f"the export says {doc_id!r} was added at {stamp!r}; the export is damaged")
            yield doc_id, metadata, pages[i], vectors[i], None if stamp is None else float(stamp)
