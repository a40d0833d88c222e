"""The Ray Data pipeline: list files, render pages in CPU tasks, encode + prune in an actor pool,
regroup pages by document and commit each document all or nothing.

The guarantees are those of :func:`sap_rag.index.documents.add_documents`: every file is read
before anything is written (one unreadable file stops the run, or with ``skip_errors`` is
reported at the end); documents already in the index (same content hash) are skipped, so a
killed job run again finishes the rest without duplicates; a changed file replaces its old
version; each document is committed whole or not at all. Ray retries a task or restarts an actor
that died; what cannot be retried fails the job, and the index then holds whole documents only.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, MissingDependencyError, UnreadableInputError
from ..index.documents import AddReport, drop_older_versions, finish_report
from ..index.filters import validate_metadata
from ..ingest.documents import DEFAULT_INCLUDE, IngestError, discover
from ..ingest.pdf import DEFAULT_DPI
from ..progress import progress
from .actors import MAX_RESTARTS, JobActors
from .tasks import EncodeActor, encoder_loader, probe_file, render_pages
from .writers import Writer, choose_writer

if TYPE_CHECKING:
    from ..index.index import SAPIndex

logger = logging.getLogger(__name__)

__all__ = ["MAX_RESTARTS", "RayOptions", "index_with_ray"]

MIN_RENDER_CPUS = 0.5  # the smallest CPU reservation of a render task (and of an encoder actor)


@dataclass
class RayOptions:
    """How the job runs on Ray.

    Attributes:
        address: a Ray cluster address (``"auto"``, ``"ray://head:10001"``); None starts a local
            Ray with ``num_cpus`` (unless Ray is already initialised in this process).
        workers: encoder actors (one model each).
        gpus_per_worker: GPUs per actor (0: CPU; fractions share a GPU).
        cpus_per_worker: CPUs per actor (its torch threads).
        num_cpus: CPUs of a local Ray started here (None: all).
        device: the actors' torch device (default: cuda when they have a GPU, else cpu).
        writer: ``"auto"`` (the index's backend decides), ``"driver"`` or ``"parallel"``.
        qdrant_api_key: the server's API key, for parallel writers (kept in memory only).
        encoder: tests and custom models: a picklable callable returning the encoder each actor uses
            (default: load the index's recorded encoder).
        fault: tests only: a picklable callable each actor runs before each batch.
    """

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    num_cpus: int | None = None
    device: str | None = None
    writer: str = "auto"
    qdrant_api_key: str | None = None
    encoder: Callable[[], Any] | None = None
    fault: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise InvalidInputError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not isinstance(self.gpus_per_worker, (int, float)) or self.gpus_per_worker < 0:
            raise InvalidInputError(f"gpus_per_worker must be a number >= 0, got {self.gpus_per_worker!r}")
        if self.writer not in ("auto", "driver", "parallel"):
            raise InvalidInputError(f"writer must be auto, driver or parallel, got {self.writer!r}")


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependencyError("distributed indexing needs Ray Data: pip install 'sap-rag[ray]'") from exc
    return ray


def index_with_ray(
    index: SAPIndex,
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    ray: RayOptions | None = None,
    include: Sequence[str] = DEFAULT_INCLUDE,
    skip_errors: bool = False,
    metadata: Mapping[str, Any] | None = None,
    dpi: int = DEFAULT_DPI,
    password: str | None = None,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> AddReport:
    """:meth:`SAPIndex.add_documents` on Ray: the same index content, the same report.

    Args:
        index: an open, writable index with an encoder (or ``ray.encoder``).
        paths: files and/or folders; ``include`` filters folder contents.
        ray: where and how to run (:class:`RayOptions`).
        skip_errors: index the readable files and report the others, instead of stopping.
        metadata: extra metadata for every document (``source`` and ``filename`` are set).
        dpi, password: PDF rendering.
        batch_size: pages per encoder forward pass and per actor call.
        show_progress: a progress bar over committed pages.
    """
    options = ray or RayOptions()
    rayl = _ray()
    started = time.perf_counter()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    extra = validate_metadata(dict(metadata or {}))
    files = discover(paths, include)
    report = AddReport()
    own_ray = not rayl.is_initialized()
    if own_ray:
        rayl.init(address=options.address, num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        readable = _probe(rayl, files, dpi, password, skip_errors, report)
        pending, seen = [], set()
        for order, (path, doc_id, num_pages) in enumerate(readable):
            report.doc_ids.append(doc_id)
            if doc_id in index or doc_id in seen:
                continue
            seen.add(doc_id)
            pending.append({"order": order, "path": os.fspath(path), "doc_id": doc_id, "num_pages": num_pages})
        writer = choose_writer(index, options.writer)
        metadata_of = {}
        for row in pending:
            path = Path(row["path"])
            metadata_of[row["doc_id"]] = {"source": os.fspath(path.resolve()), "filename": path.name, **extra}
        total = sum(row["num_pages"] for row in pending)
        committed: set[str] = set()
        with progress(total=total, desc="indexing", unit="page", enabled=show_progress) as bar:
            if pending:
                writer.prepare(pending, metadata_of)
                actors = JobActors()
                try:
                    pages = _pages(rayl, index, pending, options, dpi, password, batch_size, writer, actors)
                    for doc_id, rows in _regroup(pages):
                        report.added.append(writer.commit(doc_id, rows, metadata_of[doc_id]))
                        committed.add(doc_id)
                        bar.update(len(rows))
                except BaseException:
                    writer.abort()
                    raise
                finally:
                    actors.stop(rayl)
        first: set[str] = set()
        for path, doc_id, _ in readable:
            if doc_id not in committed or doc_id in first:
                report.unchanged.append(doc_id)
            first.add(doc_id)
            source = os.fspath(Path(path).resolve())
            drop_older_versions(index, source, doc_id, report)
    finally:
        if own_ray:
            rayl.shutdown()
    return finish_report(index, report, started, " on Ray")


def _probe(
    rayl: Any, files: list[Path], dpi: int, password: str | None, skip_errors: bool, report: AddReport
) -> list[tuple[Path, str, int]]:
    """Pass 1 on Ray: every file read and rendered once; an unreadable one stops here (nothing written)."""
    if not files:
        return []
    items = [{"order": i, "path": os.fspath(path)} for i, path in enumerate(files)]
    ds = rayl.data.from_items(items).map(probe_file, fn_kwargs={"dpi": dpi, "password": password})
    rows = sorted(ds.take_all(), key=lambda r: r["order"])
    readable = []
    for row in rows:
        if row["error"]:
            if not skip_errors:
                raise UnreadableInputError(row["error"])
            logger.warning("skipping %s", row["error"])
            report.skipped.append(IngestError(source=row["path"], message=row["error"]))
            continue
        readable.append((Path(row["path"]), row["doc_id"], int(row["num_pages"])))
    return readable


def _pages(
    rayl: Any,
    index: SAPIndex,
    pending: list[dict[str, Any]],
    options: RayOptions,
    dpi: int,
    password: str | None,
    batch_size: int | None,
    writer: Writer,
    actors: JobActors,
) -> Iterator[dict[str, Any]]:
    """Pass 2 on Ray: rendered, encoded and pruned pages, in input order (documents contiguous)."""
    context = rayl.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # commit order = input order: the same point ids
    context.enable_progress_bars = False
    size = int(batch_size or 4)
    load = options.encoder
    if load is None:
        spec = index.manifest.encoder
        if spec is None:
            raise InvalidInputError("this index has no encoder; give RayOptions(encoder=...) to encode pages")
        device = options.device or ("cuda" if options.gpus_per_worker else "cpu")
        load = encoder_loader(spec["spec"], spec.get("window"), device, size)
    actor_cpus, render_cpus = cpu_plan(rayl.cluster_resources().get("CPU", 0.0), options, writer.stage_cpus(options))
    ds = (
        rayl.data.from_items(pending)
        .flat_map(render_pages, fn_kwargs={"dpi": dpi, "password": password}, num_cpus=render_cpus)
        .map_batches(
            EncodeActor,
            fn_constructor_kwargs={"load": load, "pruner": index.pruner, "batch_size": size, "fault": options.fault},
            batch_size=size,
            batch_format="numpy",
            compute=rayl.data.ActorPoolStrategy(size=options.workers),
            num_gpus=options.gpus_per_worker,
            num_cpus=actor_cpus,
            # A dead actor is restarted and its batch retried, a bounded number of times (Ray
            # Data's default is forever); an exception raised by the model is not retried.
            ray_remote_args_fn=actors.remote_args,
        )
    )
    ds = writer.stage(ds, options, actors)
    yield from ds.iter_rows()


def cpu_plan(total: float, options: RayOptions, reserved: float = 0.0) -> tuple[float, float]:
    """``(CPUs per encoder actor, CPUs per render task)`` on a cluster of ``total`` CPUs.

    The actors live for the whole job, so if they held every CPU no render task could ever run
    and the job would wait forever (Ray's CPUs are reservations). Render tasks get a whole CPU when
    one is left over, else what is left; when nothing is, the actors give up a share of theirs
    (``reserved``: CPUs the writer's stage holds).

    >>> cpu_plan(8, RayOptions(workers=2))
    (1.0, 1.0)
    >>> cpu_plan(2, RayOptions(workers=1))
    (1.0, 1.0)
    >>> cpu_plan(2, RayOptions(workers=2))
    (0.75, 0.5)
    """
    actors = options.workers * options.cpus_per_worker
    spare = total - actors - reserved
    if spare >= MIN_RENDER_CPUS:
        return options.cpus_per_worker, min(1.0, spare)
    per_actor = (total - reserved - MIN_RENDER_CPUS) / options.workers
    if per_actor < MIN_RENDER_CPUS:
        raise InvalidInputError(
            f"the Ray cluster has {total:g} CPUs, too few for {options.workers} encoder workers plus page "
            "rendering; use fewer workers or a larger cluster"
        )
    logger.warning(
        "%d workers x %g CPUs would leave none of the cluster's %g CPUs for rendering pages; each worker "
        "reserves %.2f CPUs instead",
        options.workers,
        options.cpus_per_worker,
        total,
        per_actor,
    )
    return per_actor, MIN_RENDER_CPUS


def _regroup(pages: Iterator[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Whole documents from a stream of pages in which each document's pages are contiguous."""
    current: str | None = None
    rows: list[dict[str, Any]] = []
    for page in pages:
        if page["doc_id"] != current:
            if rows:
                yield _whole(current, rows)
            current, rows = page["doc_id"], []
        rows.append(page)
    if rows:
        yield _whole(current, rows)


def _whole(doc_id: Any, rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    numbers = [int(r["page_number"]) for r in rows]
    expected = int(rows[0]["num_pages"])
    if numbers != list(range(1, expected + 1)):
        raise RuntimeError(f"Ray returned pages {numbers} of {doc_id!r}, expected 1..{expected}; nothing of it written")
    return str(doc_id), rows
