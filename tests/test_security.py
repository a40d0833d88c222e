"""A crafted index directory cannot read, write, delete or execute anything outside itself.

Each test builds the attack as an attacker would (a real index, then crafted files in it) and
checks that a victim outside the index survives untouched, through the Python API and the CLI.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import sqlite3

import numpy as np
import pytest
from _index_utils import random_page
from conftest import make_page

from sap_rag.cli import main
from sap_rag.errors import InvalidInputError
from sap_rag.index import SAPIndex
from sap_rag.index.errors import IndexFormatError
from sap_rag.index.images import ImageStore, is_image_name

DIM = 8


def build_index(root: pathlib.Path, docs: int = 2) -> pathlib.Path:
    """A real embedded index of ``docs`` one-page documents with stored page images."""
    rng = np.random.default_rng(0)
    with SAPIndex.create(root, dim=DIM) as index:
        for d in range(docs):
            index.add_pages([random_page(rng, DIM)], f"doc-{d}", images=[make_page(d)])
    return root


def snapshot(root: pathlib.Path) -> dict:
    """What an index commits: documents, their pages and a search's results."""
    with SAPIndex.open(root) as index:
        query = np.ones((2, DIM), dtype=np.float32)
        return {
            "documents": index.documents(),
            "records": [(d.doc_id, d.num_pages, d.num_vectors) for d in map(index.document, index.documents())],
            "hits": [(h.doc_id, h.page_number, round(h.score, 5)) for h in index.search(query, k=5)],
        }


def victim_folder(tmp_path: pathlib.Path) -> pathlib.Path:
    folder = tmp_path / "victim"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(f"precious {name}")
    return folder


def victim_intact(folder: pathlib.Path) -> bool:
    return {p.name: p.read_text() for p in folder.iterdir()} == {n: f"precious {n}" for n in ("a.txt", "b.txt")}


def sql(root: pathlib.Path, statement: str, args: tuple = ()) -> None:
    with sqlite3.connect(root / "registry.sqlite") as db:
        db.execute(statement, args)


# --- 1. the manifest names a qdrant-client local-mode folder with a pickle in it -----------------


class _Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "code ran"))


def _evil_local_qdrant(folder: pathlib.Path, marker: pathlib.Path) -> None:
    """A real qdrant-client local-mode folder whose stored point is a malicious pickle."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(folder))
    client.create_collection("pages", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.DOT))
    client.upsert("pages", [models.PointStruct(id=1, vector=[0.0] * DIM, payload={})])
    client.close()
    (storage,) = folder.rglob("storage.sqlite")
    with sqlite3.connect(storage) as db:
        db.execute("UPDATE points SET point = ?", (pickle.dumps(_Payload(marker)),))


def test_a_manifest_cannot_make_qdrant_client_unpickle_a_folder_outside(tmp_path, capsys):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "elsewhere"
    _evil_local_qdrant(evil, marker)
    # The payload is live: qdrant-client itself runs it when it opens the folder.
    from qdrant_client import QdrantClient

    with pytest.raises(AttributeError):  # the payload's return value is not a point
        QdrantClient(path=str(evil))
    assert marker.read_text() == "code ran"
    marker.unlink()

    root = build_index(tmp_path / "idx")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["backend"] = {"kind": "qdrant", "collection": "pages", "path": str(evil)}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for inside in (str(evil), "shard/../../elsewhere", str(root / "q")):  # absolute, relative, inside: all refused
        manifest["backend"]["path"] = inside
        (root / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(InvalidInputError, match=r"client=QdrantClient\(path=\.\.\.\)"):
            SAPIndex.open(root)
    manifest["backend"]["path"] = str(evil)
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert main(["info", "--index", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "local-mode" in err and err.count("\n") == 1
    assert main(["search", "q", "--index", str(root)]) == 1
    assert not marker.exists()


# --- 2. manifest names that point outside (the edge shard, a link) ----------------------------------


def test_manifest_names_and_links_are_validated(tmp_path, capsys):
    root = build_index(tmp_path / "idx")
    good = (root / "manifest.json").read_text()
    before = snapshot(root)
    crafted = {
        "backend": {"kind": "edge", "path": "../elsewhere"},
        "dim": "8",
        "encoder": {"spec": ["x"]},
        "storage": "../x",
        "store_images": "yes",
    }
    for key, value in crafted.items():
        (root / "manifest.json").write_text(json.dumps({**json.loads(good), key: value}))
        with pytest.raises(IndexFormatError, match="damaged or was tampered with"):
            SAPIndex.open(root)
    # manifest.json as a link to a manifest elsewhere is not read
    outside = tmp_path / "outside.json"
    outside.write_text(good)
    (root / "manifest.json").unlink()
    (root / "manifest.json").symlink_to(outside)
    with pytest.raises(IndexFormatError, match="symbolic link"):
        SAPIndex.open(root)
    assert main(["info", "--index", str(root)]) == 1 and "symbolic link" in capsys.readouterr().err
    (root / "manifest.json").unlink()
    (root / "manifest.json").write_text(good)
    assert snapshot(root) == before


# --- 3. image garbage collection and a symlinked bucket -------------------------------------------


def test_garbage_collection_does_not_follow_a_linked_bucket(tmp_path):
    root = build_index(tmp_path / "idx")
    before = snapshot(root)
    images_before = sorted(p.relative_to(root) for p in (root / "images").rglob("*") if p.is_file())
    victim = victim_folder(tmp_path)
    (root / "images" / "zz").symlink_to(victim, target_is_directory=True)
    # An interrupted write left in the journal: opening the index recovers and collects garbage.
    sql(root, "INSERT INTO journal(gen, doc_id, num_pages, state) VALUES (999, 'doc-x', 1, 'stale')")
    with SAPIndex.open(root) as index:
        assert index.check().ok
    assert victim_intact(victim)
    assert (root / "images" / "zz").is_symlink()  # left for the owner to see, never entered
    assert sorted(p.relative_to(root) for p in (root / "images").rglob("*") if p.is_file()) == images_before
    assert snapshot(root) == before


def test_an_images_folder_that_is_a_link_is_never_entered(tmp_path):
    root = build_index(tmp_path / "idx")
    victim = victim_folder(tmp_path)
    (root / "images").rename(tmp_path / "moved")
    (root / "images").symlink_to(victim, target_is_directory=True)
    store = ImageStore(root / "images")
    assert store.collect_garbage(set()) == 0 and store.names() == set() and store.bytes_on_disk() == 0
    assert victim_intact(victim)


# --- 4. image names from the registry -----------------------------------------------------------


def test_delete_does_not_unlink_a_registry_path_outside_the_index(tmp_path, capsys):
    root = build_index(tmp_path / "idx")
    victim = tmp_path / "victim.txt"  # images/../../victim.txt
    victim.write_text("precious")
    sql(root, "UPDATE documents SET images = ? WHERE doc_id = 'doc-0'", (json.dumps(["../victim.txt"]),))
    sql(root, "UPDATE image_refs SET name = '../victim.txt' WHERE doc_id = 'doc-0'")
    with SAPIndex.open(root) as index:
        with pytest.raises(IndexFormatError, match="not a content-hash name"):
            index.document("doc-0")  # its image path is refused, not handed out
    assert main(["delete", "doc-1", "--index", str(root)]) == 0  # an honest document still goes
    assert main(["delete", "doc-0", "--index", str(root)]) == 0
    capsys.readouterr()
    assert victim.read_text() == "precious"
    with SAPIndex.open(root) as index:
        assert index.documents() == [] and index.check().ok


def test_a_linked_image_file_is_not_read(tmp_path, capsys):
    root = build_index(tmp_path / "idx", docs=1)
    (image,) = [p for p in (root / "images").rglob("*") if p.is_file()]
    secret = tmp_path / "secret.png"
    make_page(42).save(secret)
    image.unlink()
    image.symlink_to(secret)
    with SAPIndex.open(root) as index:
        with pytest.raises(IndexFormatError, match="symbolic link"):
            index.document("doc-0")
    assert secret.is_file()


@pytest.mark.parametrize(
    "name",
    ["../victim.txt", "/etc/passwd", "0" * 64 + ".png/../x", "0" * 63 + ".png", "0" * 64 + ".exe", "A" * 64 + ".png"],
)
def test_only_content_hash_names_are_image_names(tmp_path, name):
    assert not is_image_name(name)
    store = ImageStore(tmp_path / "images")
    with pytest.raises(IndexFormatError):
        store.path(name)
    store.remove([name])  # logged and skipped, nothing raised, nothing touched
    assert is_image_name("0123456789abcdef" * 4 + ".jpg")


def test_image_paths_are_absolute(tmp_path, monkeypatch):
    build_index(tmp_path / "idx", docs=1)
    monkeypatch.chdir(tmp_path)
    with SAPIndex.open(pathlib.Path("idx")) as index:
        (hit,) = index.search(np.ones((1, DIM), dtype=np.float32), k=1)
        assert hit.image_path is not None and hit.image_path.is_absolute() and hit.image_path.is_file()
        assert os.path.samefile(hit.image_path, index.document("doc-0").image_paths[0])
