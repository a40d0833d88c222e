"""What an import accepts: an export is untrusted input (downloaded, shared, crafted), so every size
that costs memory is bounded, and the bounds that can be checked before anything is decoded are
checked from the Parquet footer first.

A Parquet file can hold far more than its size suggests: a run-length-encoded column of 8 KB can
decode to gigabytes, and a dictionary-encoded string column repeats one long value in every row.
So the importer

- refuses a row group whose vector columns hold more values than its pages may have (at most
  :data:`MAX_PAGE_VECTORS` anchors a page) or than :data:`MAX_GROUP_VALUES` in all, from the footer,
  before reading it;
- reads at most :data:`READ_BATCH` pages at a time, string and binary columns as dictionaries, and
  checks each value's length (:data:`MAX_TEXT_BYTES`, :data:`MAX_IMAGE_BYTES`) before it is copied;
- checks every page after decoding: anchors at most the page's token count (the model's tokens:
  pruning only removes) and :data:`MAX_PAGE_VECTORS`, finite and within the storage's range.
"""

from __future__ import annotations

from typing import Any

from .format import TransferError

__all__ = [
    "MAX_GROUP_BYTES",
    "MAX_GROUP_VALUES",
    "MAX_IMAGE_BYTES",
    "MAX_PAGE_VECTORS",
    "MAX_TEXT_BYTES",
    "READ_BATCH",
    "check_row_group",
]

MAX_PAGE_VECTORS = 16_384
"""Anchors a page may hold: the most visual tokens a supported model gives one page (Qwen2-VL's
processor at its largest ``max_pixels``, 12,845,056 pixels in 28 x 28 patches). Pruning keeps a
subset, so a real page holds far fewer (about 100 at SAP's default keep ratio)."""

MAX_GROUP_VALUES = 1 << 26
"""Vector components (anchors and pooled vectors) one Parquet row group may hold: 256 MB as
float32. ``export_index`` writes row groups far smaller (:data:`~sap_rag.transfer.exporter.ROW_GROUP_VALUES`)."""

MAX_GROUP_BYTES = 1 << 30
"""Uncompressed bytes of one string or binary column (payloads, images) in one row group."""

MAX_TEXT_BYTES = 16 << 20
"""Bytes of one doc id, payload, metadata or image name."""

MAX_IMAGE_BYTES = 256 << 20
"""Bytes of one embedded page image (the pixel limit of ingestion is checked too)."""

READ_BATCH = 16
"""Pages decoded at a time."""

_VECTOR_COLUMNS = ("anchors", "pooled")
_BYTE_COLUMNS = ("doc_id", "payload", "image_name", "image")


def check_row_group(metadata: Any, group: int, dim: int, pooled_per_page: int) -> int:
    """Refuse row group ``group`` of ``pages.parquet`` (its footer ``metadata``) if it holds more
    than its pages may, before any of it is decoded; return its number of rows (pages).

    ``pooled_per_page``: the pooled vectors the index stores per page (0: the column must be null).
    """
    rg = metadata.row_group(group)
    rows = int(rg.num_rows)
    values: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for j in range(rg.num_columns):
        chunk = rg.column(j)
        top = chunk.path_in_schema.split(".", 1)[0]
        values[top] = values.get(top, 0) + int(chunk.num_values)
        sizes[top] = sizes.get(top, 0) + int(chunk.total_uncompressed_size)
    where = f"the export's pages.parquet, row group {group + 1} ({rows} pages)"
    # num_values counts every slot, nulls included: a null page or vector takes one.
    per_page = {"anchors": MAX_PAGE_VECTORS, "pooled": min(pooled_per_page, MAX_PAGE_VECTORS)}
    total = 0
    for name in _VECTOR_COLUMNS:
        allowed = rows * max(per_page[name], 1) * dim + rows
        if values.get(name, 0) > allowed:
            raise TransferError(
                f"{where} holds {values[name]:,} {name} values, more than its pages may have "
                f"(at most {per_page[name]:,} vectors of dim {dim} a page); the export is damaged or crafted"
            )
        total += values.get(name, 0)
    if total > MAX_GROUP_VALUES + 2 * rows:
        raise TransferError(
            f"{where} holds {total:,} vector values, more than an import decodes at once "
            f"({MAX_GROUP_VALUES:,}); export the index again with this sap-rag (smaller row groups)"
        )
    if values.get("positions", 0) > rows * (2 * MAX_PAGE_VECTORS + 1):
        raise TransferError(f"{where} holds {values['positions']:,} positions, more than its pages may have")
    if values.get("mean", 0) > rows * (dim + 1):
        raise TransferError(f"{where} holds {values['mean']:,} mean values, more than {rows} vectors of dim {dim}")
    for name in _BYTE_COLUMNS:
        if sizes.get(name, 0) > MAX_GROUP_BYTES:
            raise TransferError(
                f"{where}: its {name} column takes {sizes[name]:,} bytes, more than an import reads at once "
                f"({MAX_GROUP_BYTES:,})"
            )
    return rows
