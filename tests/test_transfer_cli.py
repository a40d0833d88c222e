"""``sap-rag export`` / ``import`` command code (wired into the parser by the lead at merge)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from _index_utils import random_corpus, unit_rows

from sap_rag.cli import scale_cmds
from sap_rag.errors import InvalidInputError
from sap_rag.index import SAPIndex

pytest.importorskip("qdrant_client")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sap-rag")
    sub = parser.add_subparsers(dest="command", required=True)
    scale_cmds.register(sub)
    index = sub.add_parser("index")
    index.add_argument("paths", nargs="+")
    scale_cmds.add_ray_arguments(index)
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    return args.func(args)


def test_export_then_import_to_local_mode_and_embedded(tmp_path, capsys):
    with SAPIndex.create(tmp_path / "idx", dim=8) as index:
        for doc_id, pages in random_corpus(1, 8, docs=3).items():
            index.add_pages(pages, doc_id=doc_id, metadata={"source": doc_id})
        query = unit_rows(np.random.default_rng(0), 3, 8)
        expected = [(h.doc_id, h.page_number, h.score) for h in index.search(query, k=5)]
    assert _run("export", "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "exp")) == 0
    assert "exported 3 documents" in capsys.readouterr().out
    argv = ["import", str(tmp_path / "exp"), "--index", str(tmp_path / "local"), "--qdrant-path"]
    assert _run(*argv, str(tmp_path / "q"), "--collection", "moved", "--on-disk-vectors") == 0
    assert _run("import", str(tmp_path / "exp"), "--index", str(tmp_path / "edge")) == 0
    assert "imported 3 documents" in capsys.readouterr().out
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "q"))
    assert client.get_collection("moved").config.params.vectors["anchors"].on_disk is True  # the option arrived
    for name in ("local", "edge"):
        # A manifest-named local-mode folder is opened only through the caller's client.
        with SAPIndex.open(tmp_path / name, client=client if name == "local" else None) as index:
            hits = [(h.doc_id, h.page_number, h.score) for h in index.search(query, k=5)]
            assert [h[:2] for h in hits] == [e[:2] for e in expected]
            assert np.allclose([h[2] for h in hits], [e[2] for e in expected], atol=1e-5)
    client.close()


def test_collection_options_need_a_server_and_valid_values(tmp_path):
    with SAPIndex.create(tmp_path / "idx", dim=8) as index:
        index.add_pages(random_corpus(1, 8, docs=1)["doc-0"], doc_id="d")
    _run("export", "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "exp"))
    with pytest.raises(InvalidInputError, match="need --qdrant-url"):
        _run("import", str(tmp_path / "exp"), "--index", str(tmp_path / "new"), "--shards", "3")
    with pytest.raises(InvalidInputError, match="KEY=SCHEMA"):
        _run("import", str(tmp_path / "exp"), "--index", str(tmp_path / "new"), "--payload-index", "oops")
    assert not (tmp_path / "new").exists()
    args = _parser().parse_args(["index", "x", "--workers", "2"])
    with pytest.raises(InvalidInputError, match="need --ray"):
        scale_cmds.add_documents(None, args)
