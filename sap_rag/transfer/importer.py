"""Building an index from an export (see :mod:`sap_rag.transfer.format`), one document at a time.

An import is visibly incomplete until it finishes, and resumable: the new index carries an import
marker (:mod:`sap_rag.transfer.marker`) from before its first document until after its last, and
running the same import again on that index verifies the documents already stored and writes the
rest. A failed import (a damaged or crafted export, an error) removes what it created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..index.backends.factory import collection_options
from ..index.lifecycle import discard_new
from ..index.manifest import MANIFEST_NAME, Manifest
from ..progress import progress
from .format import ImageMode, TransferError
from .marker import read_marker, remove_marker, resume_command, write_marker
from .reader import ExportInfo, documents, read_export_info
from .restore import DocumentWriter, matches

logger = logging.getLogger(__name__)

__all__ = ["ImportReport", "import_index", "read_export_info"]


@dataclass
class ImportReport:
    """What :func:`import_index` built: the new index's ``path``, ``documents``, ``pages``,
    ``vectors``, ``images`` stored, ``resumed`` (documents an earlier, interrupted run had already
    stored, verified and kept) and ``seconds``."""

    path: Path
    documents: int = 0
    pages: int = 0
    vectors: int = 0
    images: int = 0
    resumed: int = 0
    seconds: float = 0.0


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
    with its own backend, and the same documents, page ids (gaps left by deleted pages included),
    ``added_at`` times, vectors and payloads, so it returns the same search results.

    Until it finishes, the index says it holds an incomplete import (``sap_rag.transfer.marker``);
    if the process dies, calling ``import_index`` again with the same arguments resumes: documents
    already stored are verified (and rewritten if they differ), the others written. An error
    removes what the import created. The export is untrusted input: everything in it is checked,
    and memory stays bounded whatever it claims (:mod:`sap_rag.transfer.limits`).

    Args:
        source: an export directory (:func:`~sap_rag.transfer.export_index`).
        path: the new index's directory (must not exist or be empty; or hold this import, unfinished).
        images_from: for an export made with ``images="reference"``: the source index directory
            (default: the one recorded in the export).
        show_progress: a progress bar over pages.
        create_options: where the vectors go, as for :meth:`SAPIndex.create`: ``qdrant_url=``,
            ``client=``, ``collection=``, ``qdrant_api_key=``, ``indexing_threshold_kb=`` (and
            ``collection_options=``, a ``CollectionOptions`` for a new server collection).
            Default: embedded.

    Raises:
        TransferError: ``source`` is not a readable export, its content is inconsistent, or
            ``path`` holds a different import's unfinished index.
        IndexExistsError: ``path`` holds an index or other files.
    """
    started = time.perf_counter()
    export = read_export_info(source)  # everything checkable before the index exists
    image_root = _image_root(export, images_from)
    root = Path(path)
    existed = root.exists()
    index, resuming = _target(export, root, create_options)
    report = ImportReport(path=root)
    writer = DocumentWriter(index)
    try:
        if not resuming:
            command = resume_command(Path(source), root)
            write_marker(
                root, source=Path(source), export_id=export.export_id, documents=export.documents, command=command
            )
            # The source's manifest with the new backend: encoder, pruner, staged-search settings carry over.
            carried = dataclasses.replace(export.manifest, backend=index.manifest.backend)
            carried.write(index.path)
            index.manifest = carried
        with progress(total=export.pages or None, desc="importing", unit="page", enabled=show_progress) as bar:
            for doc in documents(export, image_root):
                with index._mutex:
                    if resuming and matches(index, doc):
                        report.resumed += 1
                    else:
                        writer.write(doc)
                report.documents += 1
                report.pages += len(doc.pages)
                report.vectors += doc.num_vectors
                report.images += sum(1 for name in doc.images if name)
                bar.update(len(doc.pages))
            with index._mutex:
                writer.commit()
        _check_totals(export, report)
        if resuming:
            _check_nothing_else(index, export)
        index.optimize()
        remove_marker(root)  # last: from here on the index is complete
    except Exception:
        _discard(index, root, keep_folder=existed and not resuming)
        raise
    except BaseException:  # Ctrl-C: the index stays, marked unfinished, for the same command to resume
        with contextlib.suppress(Exception):
            writer.commit()  # what was written so far is kept (committed, or undone on the next open)
        index.close()
        logger.warning("the import into %s was interrupted; run it again with the same arguments to resume", root)
        raise
    index.close()
    report.seconds = time.perf_counter() - started
    logger.info(
        "imported %d documents (%d pages%s) into %s in %.1f s",
        report.documents,
        report.pages,
        f", {report.resumed} documents already there from an interrupted run" if report.resumed else "",
        path,
        report.seconds,
    )
    return report


def _image_root(export: ExportInfo, images_from: str | os.PathLike | None) -> Path | None:
    try:
        mode = ImageMode(export.info.get("images", "none"))
    except ValueError:
        raise TransferError(f"the export's images mode {export.info.get('images')!r} is unknown") from None
    if mode is not ImageMode.REFERENCE or not export.manifest.store_images:
        return None
    recorded = export.info.get("source_index")
    image_root = Path(images_from or (recorded if isinstance(recorded, str) else "")) / "images"
    if not image_root.is_dir():
        raise TransferError(
            f"the export references page images in {image_root}, which does not exist; pass images_from=<the "
            "source index directory>, or export again with images='embed'"
        )
    return image_root


def _target(export: ExportInfo, root: Path, create_options: dict[str, Any]) -> tuple[Any, bool]:
    """``(index, resuming)``: a new index at ``root``, or the unfinished import of this export there."""
    from ..index.index import SAPIndex

    options = dict(create_options)
    if (root / MANIFEST_NAME).is_file() and not (root / MANIFEST_NAME).is_symlink():
        marker = read_marker(root)
        if marker is not None and marker["export_id"] == export.export_id:
            logger.info("resuming the unfinished import of %s into %s", export.root, root)
            reopen = {k: options[k] for k in ("client", "qdrant_api_key") if k in options}
            return SAPIndex.open(root, **reopen), True
        if marker is not None:
            raise TransferError(
                f"{root} holds an unfinished import of another export ({marker['source']}); delete it, or resume "
                f"that one with `{marker['command']}`"
            )
        if _empty_from_an_interrupted_import(root, export.manifest):
            # Killed between creating the index and writing the marker: nothing was imported yet.
            index = SAPIndex.open(root, **{k: options[k] for k in ("client", "qdrant_api_key") if k in options})
            return index, False
    collection = options.pop("collection_options", None)
    two = export.manifest.two_stage
    manifest = export.manifest
    with collection_options(collection):
        index = SAPIndex.create(
            root,
            dim=manifest.dim,
            storage=manifest.storage,
            two_stage=two.get("mode", "auto"),
            two_stage_threshold=int(two.get("threshold", 1)),
            prefetch=int(two["prefetch"]) if "prefetch" in two else None,
            coarse=int(two.get("coarse", 1500)),
            pooled_vectors=manifest.pooled_vectors,
            oversampling=manifest.oversampling,
            store_images=manifest.store_images,
            **options,
        )
    return index, False


def _empty_from_an_interrupted_import(root: Path, manifest: Manifest) -> bool:
    """Whether ``root`` holds what ``_target`` creates before the marker: an empty index without an
    encoder, with the export's dim and storage, and nothing else in its folder."""
    try:
        existing = Manifest.read(root)
    except Exception:
        return False
    from ..index.registry import REGISTRY_NAME, Registry

    if existing.encoder is not None or (existing.dim, existing.storage) != (manifest.dim, manifest.storage):
        return False
    try:
        registry = Registry(root / REGISTRY_NAME, read_only=True)
    except Exception:
        return False
    try:
        return registry.totals()[0] == 0 and not registry.journal()
    finally:
        registry.close()


def _check_totals(export: ExportInfo, report: ImportReport) -> None:
    got = (report.documents, report.pages, report.vectors)
    if got != (export.documents, export.pages, export.vectors):
        raise TransferError(
            f"the export says it holds {export.documents} documents, {export.pages} pages and {export.vectors} "
            f"vectors, but {got[0]}, {got[1]} and {got[2]} were read; the export is damaged"
        )


def _check_nothing_else(index: Any, export: ExportInfo) -> None:
    """A resumed import ends with exactly the export's documents (counted; each was verified)."""
    documents = index._store.registry.totals()[0]
    if documents != export.documents:
        raise TransferError(
            f"{index.path} holds {documents} documents after the import, the export {export.documents}; the index "
            "was changed while the import was unfinished: delete it and import again"
        )


def _discard(index: Any, root: Path, *, keep_folder: bool) -> None:
    """Undo a failed import: the new collection and everything in the index directory go (the
    directory too, unless it was there, empty, before)."""
    backend = index.backend
    try:
        if getattr(backend, "kind", "") == "qdrant":
            backend.client.delete_collection(backend.collection)
    except Exception:  # pragma: no cover - best effort while already failing
        logger.exception("could not delete the collection of the failed import")
    if getattr(index, "_created", None) is not None:
        # Made by this import: removed under its lock, only what it created (a racing creator's
        # index is never touched). The marker is the import's own file, written after the create.
        remove_marker(root)
        discard_new(index)
        return
    index.close()
    if not keep_folder:
        shutil.rmtree(root, ignore_errors=True)
        return
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
