"""Indexing on a local Ray cluster gives exactly the single-process index, survives a killed worker,
keeps whole documents only when a job fails, and a rerun is a no-op."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sap_rag.distributed import RayOptions, index_with_ray  # noqa: E402
from sap_rag.errors import UnreadableInputError  # noqa: E402
from sap_rag.index import SAPIndex  # noqa: E402
from sap_rag.index.registry import point_ids  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


@pytest.fixture(scope="module")
def _by_value():
    from ray import cloudpickle  # Ray's own copy: the standalone cloudpickle's registry is not the one Ray uses

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fault hooks travel to the workers


@pytest.fixture
def local_ray(_by_value):
    """A fresh 2-CPU Ray per test: a test's leftover actors (a killed and restarted one, a failed
    pool) cannot hold the CPUs the next test's tasks wait for."""
    for attempt in range(6):  # a raylet on a loaded shared machine can miss Ray's fixed 30 s start-up wait
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 5:
                raise
    yield
    ray.shutdown()


@pytest.fixture
def files(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for pdf in sorted(DATA.glob("*.pdf")):
        shutil.copy(pdf, folder / pdf.name)
    return folder


def _snapshot(index: SAPIndex) -> dict:
    """Registry records (less time) and every point: id, payload, vectors."""
    records = index._store.registry.documents()
    points = {}
    for record in records:
        for point in index.backend.retrieve_points(point_ids(record.gen, record.num_pages)):
            points[point.id] = (point.payload, point.anchors.tolist(), point.summary.tolist(), point.pooled.tolist())
    docs = [(r.doc_id, r.gen, r.num_pages, r.num_vectors, r.images, r.metadata) for r in records]
    return {"docs": docs, "points": points, "images": sorted(index._store.images.names())}


def _single(tmp_path, encoder, paths, **kwargs) -> dict:
    with SAPIndex.create(tmp_path / "single", encoder=encoder) as index:
        report = index.add_documents(paths, batch_size=2, **kwargs)
        assert report.pages > 0
        return _snapshot(index)


def _cpus_free_within(seconds: float) -> float:
    """The cluster's free CPUs once all are free, or when ``seconds`` have passed (a kill is asynchronous)."""
    deadline = time.monotonic() + seconds
    while (free := ray.available_resources().get("CPU", 0.0)) < 2.0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return free


class KillOnce:
    """Kills the worker process at its second batch, once per marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker, self.calls = str(marker), 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == 2 and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)


class FailAt:
    """Raises (a model error Ray does not retry) at the worker's third batch."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("simulated model failure")


def test_ray_builds_the_single_process_index_and_a_rerun_is_a_no_op(local_ray, tmp_path, tiny_encoder, files):
    (files / "corrupt.pdf").write_bytes(b"%PDF-1.4\n this is not a pdf")
    expected = _single(tmp_path, tiny_encoder, [files], skip_errors=True)
    with SAPIndex.create(tmp_path / "ray", encoder=tiny_encoder) as index:
        report = index_with_ray(index, [files], ray=RayOptions(workers=2), batch_size=2, skip_errors=True)
        assert [e.source for e in report.skipped] == [str(files / "corrupt.pdf")]
        assert len(report.added) == 3 and report.unchanged == []
        assert _snapshot(index) == expected
        again = index_with_ray(index, [files], ray=RayOptions(workers=1), batch_size=2, skip_errors=True)
        assert again.added == [] and sorted(again.unchanged) == sorted(d[0] for d in expected["docs"])
        assert _snapshot(index) == expected


def test_a_bad_file_stops_the_job_before_anything_is_written(local_ray, tmp_path, tiny_encoder, files):
    (files / "corrupt.pdf").write_bytes(b"%PDF-1.4\n this is not a pdf")
    with SAPIndex.create(tmp_path / "ray", encoder=tiny_encoder) as index:
        with pytest.raises(UnreadableInputError, match=r"corrupt\.pdf"):
            index_with_ray(index, [files], ray=RayOptions(workers=1), batch_size=2)
        assert len(index) == 0 and index.documents() == []
        assert index._store.images.names() == set()


def test_a_killed_worker_is_replaced_and_the_job_finishes(local_ray, tmp_path, tiny_encoder, files):
    expected = _single(tmp_path, tiny_encoder, [files])
    marker = tmp_path / "killed"
    with SAPIndex.create(tmp_path / "ray", encoder=tiny_encoder) as index:
        index_with_ray(index, [files], ray=RayOptions(workers=1, fault=KillOnce(marker)), batch_size=2)
        assert marker.exists()  # the worker did die mid-job
        assert _snapshot(index) == expected


def test_a_failed_job_leaves_whole_documents_and_a_rerun_finishes(local_ray, tmp_path, tiny_encoder, files):
    expected = _single(tmp_path, tiny_encoder, [files])
    with SAPIndex.create(tmp_path / "ray", encoder=tiny_encoder) as index:
        with pytest.raises(Exception, match="simulated model failure"):
            index_with_ray(index, [files], ray=RayOptions(workers=1, fault=FailAt()), batch_size=2)
        # the failed job stopped its actors (the exception pytest keeps still holds Ray Data's executor)
        assert _cpus_free_within(20.0) == 2.0
        partial = _snapshot(index)
        # How many documents were committed before the failure depends on how Ray Data bundled the
        # pages into tasks (a task's outputs reach the driver when it ends), so it may be none.
        assert len(partial["docs"]) < len(expected["docs"])
        assert index.check().ok  # every committed document has all its pages, no stray points
        by_id = {doc[0]: doc for doc in expected["docs"]}
        assert all(doc == by_id[doc[0]] for doc in partial["docs"])  # same gens: committed in input order
        report = index_with_ray(index, [files], ray=RayOptions(workers=1), batch_size=2)
        assert len(report.added) + len(report.unchanged) == len(expected["docs"])
        assert _snapshot(index) == expected
