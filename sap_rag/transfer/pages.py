"""Decoding the pages of an export, checked: each value's size before it is copied, each page's
vectors (count, finiteness, storage range), payload, positions and image (see
:mod:`sap_rag.transfer.limits`)."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..index.checks import MAX_METADATA_DEPTH, check_doc_id
from ..index.images import IMAGE_EXTENSIONS
from ..index.manifest import Manifest
from ..index.options import StorageType
from ..index.registry import MAX_PAGES_PER_DOCUMENT
from ..index.store import StagedPage
from ..index.vectors import as_matrix, to_storage
from .format import PAGES_FILE, STORE_FIELDS, TransferError, check_image_name
from .limits import MAX_IMAGE_BYTES, MAX_PAGE_VECTORS, MAX_TEXT_BYTES, READ_BATCH, check_row_group

__all__ = ["Strings", "check_json", "page_rows", "valid_doc_id"]


def _pyarrow() -> tuple[Any, Any]:
    from .exporter import _pyarrow as load

    return load()


class Strings:
    """A string or binary column read as a dictionary: each value's length is checked before it is copied."""

    def __init__(self, column: Any, limit: int, what: str) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if not pa.types.is_dictionary(column.type):
            column = column.dictionary_encode()
        self.column = column
        self.lengths = pc.binary_length(column.dictionary).to_numpy(zero_copy_only=False)
        self.limit = limit
        self.what = what

    def get(self, i: int) -> Any:
        if not self.column[i].is_valid:
            return None
        index = self.column.indices[i].as_py()
        if self.lengths[index] > self.limit:
            raise TransferError(
                f"the export holds a {self.what} of {int(self.lengths[index]):,} bytes (at most {self.limit:,}); "
                "the export is damaged or crafted"
            )
        return self.column.dictionary[index].as_py()


def valid_doc_id(value: Any) -> str:
    try:
        return check_doc_id(value)
    except InvalidInputError as exc:
        raise TransferError(f"the export has an invalid document id: {exc}") from None


def check_json(text: str, what: str) -> Any:
    """Parsed JSON of at most :data:`MAX_METADATA_DEPTH` levels (checked before parsing: no recursion)."""
    depth = level = 0
    quoted = escaped = False
    for ch in text:  # brackets outside strings
        if quoted:
            escaped, quoted = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            level += 1
            depth = max(depth, level)
        elif ch in "]}":
            level -= 1
    if depth > MAX_METADATA_DEPTH + 1:
        raise TransferError(f"{what} is nested {depth} levels deep (at most {MAX_METADATA_DEPTH})")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise TransferError(f"{what} is not valid JSON ({exc})") from None


def page_rows(root: Path, manifest: Manifest, image_root: Path | None) -> Iterator[tuple[str, int, StagedPage, Any]]:
    """``(doc_id, page_number, page, image name)`` of every page, checked, in file order."""
    _, pq = _pyarrow()
    dim, storage = manifest.dim, StorageType(manifest.storage)
    pooled_count = manifest.pooled_vectors
    parquet = pq.ParquetFile(root / PAGES_FILE, read_dictionary=["doc_id", "payload", "image_name", "image"])
    for group in range(parquet.metadata.num_row_groups):
        check_row_group(parquet.metadata, group, dim, pooled_count)  # again: the file may have changed
        for batch in parquet.iter_batches(batch_size=READ_BATCH, row_groups=[group]):
            anchors = _matrices(batch.column("anchors"), dim, "anchors")
            pooled = _matrices(batch.column("pooled"), dim, "pooled")
            means = _means(batch.column("mean"), dim)
            ids = Strings(batch.column("doc_id"), MAX_TEXT_BYTES, "doc_id")
            payloads = Strings(batch.column("payload"), MAX_TEXT_BYTES, "page payload")
            names = Strings(batch.column("image_name"), MAX_TEXT_BYTES, "image name")
            images = Strings(batch.column("image"), MAX_IMAGE_BYTES, "page image")
            numbers = batch.column("page_number").to_pylist()
            tokens = batch.column("num_tokens").to_pylist()
            positions = batch.column("positions")
            for i in range(batch.num_rows):
                doc_id = valid_doc_id(ids.get(i))
                number = numbers[i]
                if not isinstance(number, int) or not 0 < number <= MAX_PAGES_PER_DOCUMENT:
                    raise TransferError(f"the export has page number {number!r} in {doc_id!r}; the export is damaged")
                where = f"page {number} of {doc_id!r} in the export"
                vectors = _anchors(anchors[i], tokens[i], dim, storage, where)
                page_pooled = None
                if pooled_count:
                    if pooled[i] is None or not 0 < pooled[i].shape[0] <= min(pooled_count, vectors.shape[0]):
                        raise TransferError(
                            f"{where} has {0 if pooled[i] is None else pooled[i].shape[0]} pooled vectors; the index "
                            f"stores {pooled_count} (or the page's anchors, if fewer)"
                        )
                    page_pooled = _stored(pooled[i], dim, storage, where)
                extra = _extra(payloads.get(i), tokens[i], positions[i], vectors.shape[0], where)
                name = names.get(i)
                source = _image(name, images.get(i), image_root, where) if name is not None else None
                mean = _stored(means[i : i + 1], dim, storage, where)[0]
                page = StagedPage(vectors, mean, extra, source=source, pooled=page_pooled)
                yield doc_id, number, page, check_image_name(name) if source is not None else None


def _anchors(matrix: np.ndarray | None, tokens: Any, dim: int, storage: StorageType, where: str) -> np.ndarray:
    if matrix is None:
        raise TransferError(f"{where} has no anchors; the export is damaged")
    count = int(matrix.shape[0])
    cap = MAX_PAGE_VECTORS if tokens is None else min(MAX_PAGE_VECTORS, int(tokens))
    if not 0 < count <= cap:
        raise TransferError(
            f"{where} has {count} anchors, but a page holds 1 to {cap} (its token count, at most "
            f"{MAX_PAGE_VECTORS}); the export is damaged or crafted"
        )
    return _stored(matrix, dim, storage, where)


def _stored(matrix: np.ndarray, dim: int, storage: StorageType, where: str) -> np.ndarray:
    try:
        return to_storage(as_matrix(matrix, dim, where), storage, where)
    except InvalidInputError as exc:
        raise TransferError(f"the export has invalid vectors: {exc}") from None


def _matrices(column: Any, dim: int, what: str) -> list[np.ndarray | None]:
    """A batch's list-of-vectors column as ``(n_i, dim)`` float32 matrices (None where null)."""
    inner = column.flatten()
    if inner.null_count:
        raise TransferError(f"the export's {what} column holds null vectors; the export is damaged")
    leaf = inner.flatten()
    if leaf.null_count:
        raise TransferError(f"the export's {what} column holds null numbers; the export is damaged")
    values = leaf.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    out: list[np.ndarray | None] = []
    start = 0
    for i in range(len(column)):
        if not column[i].is_valid:
            out.append(None)
            continue
        n = int(lengths[i])
        out.append(values[start * dim : (start + n) * dim].reshape(n, dim))
        start += n
    return out


def _means(column: Any, dim: int) -> np.ndarray:
    if column.null_count or column.flatten().null_count:
        raise TransferError("the export's mean column holds nulls; the export is damaged")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(column), dim)


def _extra(payload: str | None, tokens: Any, positions: Any, anchors: int, where: str) -> dict[str, Any]:
    """The page's own payload fields: token count, positions and every unknown field verbatim."""
    extra = check_json(payload or "{}", f"the payload of {where}")
    if not isinstance(extra, dict) or STORE_FIELDS & set(extra) or {"num_tokens", "positions"} & set(extra):
        raise TransferError(f"{where} has a payload that is not an object or sets fields sap-rag sets itself")
    if tokens is not None:
        if tokens < 1:
            raise TransferError(f"{where} has num_tokens {tokens}; the export is damaged")
        extra["num_tokens"] = int(tokens)
    if positions.is_valid:
        values = positions.values.to_numpy(zero_copy_only=False)
        if len(values) > 2 * anchors or positions.values.null_count or not np.isfinite(values).all():
            raise TransferError(f"{where} has {len(values)} positions for {anchors} anchors, or non-finite ones")
        extra["positions"] = [float(x) for x in values]
    return extra


def _image(name: Any, data: bytes | None, image_root: Path | None, where: str) -> bytes | None:
    """The page image's bytes, checked (name, content hash, pixel count), or None when left out."""
    from PIL import Image

    from ..errors import UnreadableInputError
    from ..ingest.images import check_page_size

    name = check_image_name(name)
    if data is None:
        if image_root is None:
            return None
        bucket = image_root / name[:2]
        file = bucket / name
        # The source index is untrusted input: no links followed, nothing outside its images/.
        if bucket.is_symlink() or file.is_symlink() or not file.is_file():
            raise TransferError(f"{where} references the image {file}, which is missing or a link")
        if file.stat().st_size > MAX_IMAGE_BYTES:
            raise TransferError(f"{where} references the image {file}, larger than {MAX_IMAGE_BYTES:,} bytes")
        data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != name.split(".")[0]:
        raise TransferError(f"{where}: the image bytes do not match their name {name}; the export is damaged")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only: the size is checked before decoding
        check_page_size(image, f"the image of {where}")
        fmt = image.format
    except UnreadableInputError as exc:
        raise TransferError(str(exc)) from None
    except Exception as exc:
        raise TransferError(f"{where} has an unreadable image ({exc})") from None
    if IMAGE_EXTENSIONS.get(fmt or "") != name.rsplit(".", 1)[1]:
        raise TransferError(f"{where}: the image is {fmt or 'of no known format'}, but its name is {name}")
    return data
