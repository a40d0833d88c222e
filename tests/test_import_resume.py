"""A real ``sap-rag import`` killed with SIGKILL mid-way leaves an index that says it is incomplete,
and running the same command again resumes it to the full, identical index (issue 20); page ids
with gaps (after ``delete_pages``) and ``added_at`` survive export and import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _index_utils import random_corpus

from sap_rag.cli.main import main
from sap_rag.index import SAPIndex
from sap_rag.index.registry import page_point_id
from sap_rag.index.results import page_id
from sap_rag.transfer import export_index, import_index, incomplete_import
from sap_rag.transfer.marker import MARKER_NAME

pytest.importorskip("pyarrow")

DIM = 8
DOCS = 12

# The child runs the real CLI; its only change is a pause inside the (KILL_AT)-th registry commit,
# after that document's points are written and flushed: SIGKILL then lands mid-document.
_CHILD = textwrap.dedent(
    """
    import sys, time
    from sap_rag.index.registry import Registry

    export, index, kill_at, flag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    commit = Registry.commit
    calls = [0]

    def paused(self, record):
        calls[0] += 1
        if calls[0] == kill_at:
            open(flag, "w").close()
            time.sleep(600)
        return commit(self, record)

    Registry.commit = paused
    from sap_rag.cli.main import main
    sys.exit(main(["import", export, "--index", index]))
    """
)


def _source(path: Path) -> SAPIndex:
    """An index with gaps in page ids: deleted pages in two documents, one document deleted."""
    index = SAPIndex.create(path, dim=DIM, pooled_vectors=2)
    for n, (doc_id, pages) in enumerate(random_corpus(5, DIM, docs=DOCS, pages=(1, 5)).items()):
        index.add_pages(
            pages, doc_id=doc_id, metadata={"n": n}, texts=[f"text {doc_id} {i}" for i in range(len(pages))]
        )
    index.add_pages(random_corpus(6, DIM, docs=1, pages=(4, 5))["doc-0"], doc_id="gappy", metadata={"k": "v"})
    index.delete_pages(["gappy:p2", "gappy:p4"])
    index.delete("doc-3")
    return index


def _snapshot(index: SAPIndex) -> dict:
    """Per document: record fields and, per page id, vectors and payload (less the generation)."""
    out = {}
    for record in index._store.registry.documents():
        ids = [page_point_id(record.gen, n) for n in record.page_numbers]
        pages = {}
        for point in index.backend.retrieve_points(ids):
            payload = {k: v for k, v in point.payload.items() if k != "gen"}
            pooled = None if point.pooled is None else point.pooled.tolist()
            pages[page_id(record.doc_id, payload["page_number"])] = (
                point.anchors.tolist(),
                point.summary.tolist(),
                pooled,
                payload,
            )
        out[record.doc_id] = (record.page_numbers, record.num_vectors, record.metadata, record.added_at, pages)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    with _source(root / "src") as source:
        expected = _snapshot(source)
        export_index(source, root / "export")
    return root / "export", expected


def test_page_ids_with_gaps_and_added_at_survive_export_and_import(exported, tmp_path):
    export, expected = exported
    assert expected["gappy"][0] == [1, 3] and "doc-3" not in expected
    import_index(export, tmp_path / "copy")
    with SAPIndex.open(tmp_path / "copy", read_only=True) as copy:
        assert _snapshot(copy) == expected  # page ids, numbers, texts, metadata, added_at, vectors
        hits = copy.get_pages(["gappy:p1", "gappy:p2", "gappy:p3"])
        assert [h.page_number if h else None for h in hits] == [1, None, 3]
        assert copy.document("gappy").page_numbers == [1, 3]
        export_index(copy, tmp_path / "again")  # and out again: gaps are no "registry vs engine" mismatch


def test_a_killed_import_says_it_is_incomplete_and_the_rerun_resumes_it(exported, tmp_path, capsys, caplog):
    export, expected = exported
    target = tmp_path / "idx"
    flag = tmp_path / "paused"
    kill_at = 6  # 5 documents committed, the 6th written but not committed
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(export), str(target), str(kill_at), str(flag)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parent,
    )
    try:
        deadline = time.monotonic() + 180
        while not flag.exists():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the import never reached its 6th document"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    notice = incomplete_import(target)
    assert notice is not None and f"5 of {len(expected)} documents" in notice
    assert f"sap-rag import {export} --index {target}" in notice
    assert json.loads((target / MARKER_NAME).read_text())["documents"] == len(expected)
    # Visible to users, not only to the importer: a warning on every open, and `sap-rag info`
    # (after one writer open, which undoes the killed write, as read-only opens ask).
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="sap_rag.index.lifecycle"):
        SAPIndex.open(target).close()
        assert main(["info", "--index", str(target), "--json"]) == 0
    assert f"5 of {len(expected)} documents" in json.loads(capsys.readouterr().out)["incomplete_import"]
    assert sum("is incomplete" in r.getMessage() for r in caplog.records) == 2

    # The rerun with the same arguments resumes: 5 documents verified, the rest written.
    assert main(["import", str(export), "--index", str(target)]) == 0
    assert f"imported {len(expected)} documents" in capsys.readouterr().out
    assert incomplete_import(target) is None and not (target / MARKER_NAME).exists()
    with SAPIndex.open(target) as index:
        assert _snapshot(index) == expected
        assert index.check().ok
    # A finished import is not resumed again: the path holds an index.
    assert main(["import", str(export), "--index", str(target)]) == 1
    assert "already holds an index" in capsys.readouterr().err


def test_a_resumed_import_rewrites_a_document_that_differs(exported, tmp_path):
    export, expected = exported
    target = tmp_path / "idx"
    import_index(export, target)
    from sap_rag.transfer.marker import write_marker
    from sap_rag.transfer.reader import read_export_info

    # Pretend the import was interrupted, and that doc-1 was changed meanwhile.
    info = read_export_info(export)
    write_marker(target, source=export, export_id=info.export_id, documents=info.documents, command="x")
    with SAPIndex.open(target) as index:
        index.delete_pages(["doc-1:p1"], missing_ok=True)
        index.add_pages(random_corpus(9, DIM, docs=1, pages=(2, 3))["doc-0"], doc_id="doc-2", metadata={"n": -1})
    report = import_index(export, target)
    assert report.resumed == len(expected) - 2 and report.documents == len(expected)
    with SAPIndex.open(target, read_only=True) as index:
        assert _snapshot(index) == expected


def test_an_unfinished_import_of_another_export_is_not_resumed(exported, tmp_path):
    export, _ = exported
    target = tmp_path / "idx"
    with SAPIndex.create(target, dim=DIM, pooled_vectors=2) as index:
        index.add_pages(random_corpus(3, DIM, docs=1)["doc-0"], doc_id="mine")
    from sap_rag.transfer import TransferError
    from sap_rag.transfer.marker import write_marker

    write_marker(target, source=tmp_path / "other", export_id="0" * 64, documents=3, command="sap-rag import other")
    with pytest.raises(TransferError, match=r"unfinished import of another export .*sap-rag import other"):
        import_index(export, target)
    with SAPIndex.open(target, read_only=True) as index:  # refused: nothing removed or changed
        assert index.documents() == ["mine"]
    assert "1 of 3 documents" in incomplete_import(target)


def test_ctrl_c_leaves_a_resumable_index_and_an_error_removes_everything(exported, tmp_path, monkeypatch):
    export, expected = exported
    from sap_rag.transfer.restore import DocumentWriter

    real = DocumentWriter.write
    written = []

    def interrupted(self, doc):
        if len(written) == 5:
            raise KeyboardInterrupt
        written.append(doc.doc_id)
        return real(self, doc)

    monkeypatch.setattr(DocumentWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        import_index(export, tmp_path / "idx")
    assert f"5 of {len(expected)} documents" in incomplete_import(tmp_path / "idx")

    def failing(self, doc):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DocumentWriter, "write", failing)
    with pytest.raises(OSError, match="No space"):
        import_index(export, tmp_path / "idx")  # the resumed import fails: what it made goes
    assert not (tmp_path / "idx").exists()
    monkeypatch.setattr(DocumentWriter, "write", real)
    import_index(export, tmp_path / "idx")
    with SAPIndex.open(tmp_path / "idx", read_only=True) as index:
        assert _snapshot(index) == expected


def test_an_index_killed_before_its_marker_is_imported_into(exported, tmp_path):
    export, expected = exported
    # What the import creates before it writes its marker: an empty index without an encoder.
    SAPIndex.create(tmp_path / "idx", dim=DIM, pooled_vectors=2).close()
    import_index(export, tmp_path / "idx")
    with SAPIndex.open(tmp_path / "idx", read_only=True) as index:
        assert _snapshot(index) == expected
    # An index with documents (or anything else) is never imported into.
    from sap_rag.index.errors import IndexExistsError

    with SAPIndex.create(tmp_path / "other", dim=DIM) as other:
        other.add_pages(random_corpus(1, DIM, docs=1)["doc-0"], doc_id="mine")
    with pytest.raises(IndexExistsError):
        import_index(export, tmp_path / "other")
    with SAPIndex.open(tmp_path / "other", read_only=True) as other:
        assert other.documents() == ["mine"]


def test_an_import_to_qdrant_local_mode_resumes_too(exported, tmp_path):
    qdrant_client = pytest.importorskip("qdrant_client")
    export, expected = exported
    client = qdrant_client.QdrantClient(path=str(tmp_path / "q"))
    try:
        import_index(export, tmp_path / "idx", client=client, collection="moved")
        from sap_rag.transfer.marker import write_marker
        from sap_rag.transfer.reader import read_export_info

        info = read_export_info(export)
        write_marker(tmp_path / "idx", source=export, export_id=info.export_id, documents=info.documents, command="x")
        with SAPIndex.open(tmp_path / "idx", client=client) as index:
            index.delete("doc-5")  # as if the run had stopped before it
        report = import_index(export, tmp_path / "idx", client=client)
        assert (report.resumed, report.documents) == (len(expected) - 1, len(expected))
        with SAPIndex.open(tmp_path / "idx", client=client) as index:
            assert _snapshot(index) == expected
    finally:
        client.close()
