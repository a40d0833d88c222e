"""Racing creators: two processes making the same new index, through the API and the CLI.

A run removes only what it created itself, and only while it holds the lock; every run that
exits 0 finds its index intact afterwards. Also: a failed create leaves nothing, and a failed
first CLI run removes its own new index (and only that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_page

from sap_rag.cli import main
from sap_rag.index import IndexExistsError, IndexLockedError, IndexLockTimeoutError, SAPIndex
from sap_rag.index.lifecycle import discard_new
from sap_rag.index.lock import IndexLock

DIM = 16
CHILD = Path(__file__).with_name("_shared_child.py")
ROOT = CHILD.parent.parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _child(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def test_racing_api_creators_never_remove_each_others_index(tmp_path):
    children = [_child("create", str(DIM), "2") for _ in range(2)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "READY", child.stderr.read()
        for trial in range(6):
            path = tmp_path / f"trial{trial}" / "idx"  # the parent is new too
            # staggered starts: the second creator arrives during, or just after, the first one's create
            for i, child in enumerate(children):
                if i:
                    time.sleep(0.03 * trial)
                child.stdin.write(f"{path}\n")
                child.stdin.flush()
            answers = [child.stdout.readline().strip() for child in children]
            assert all(a in ("CREATED", "LOST IndexExistsError", "LOST IndexLockedError") for a in answers), (
                answers,
                [c.poll() for c in children],
            )
            assert answers.count("CREATED") >= 1, answers
            with SAPIndex.open(path) as index:  # the winner's index is there, whole
                assert index.documents() == ["doc-0", "doc-1"] and index.check().ok
    finally:
        for child in children:
            child.stdin.close()
        for child in children:
            child.wait(timeout=60)
    assert all(child.returncode == 0 for child in children), [child.stderr.read()[-2000:] for child in children]


def test_a_failed_create_removes_only_what_it_made(tmp_path, monkeypatch):
    from sap_rag.index import lifecycle

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lifecycle.Registry, "__init__", broken)
    new = tmp_path / "a" / "b" / "idx"
    with pytest.raises(OSError):
        SAPIndex.create(new, dim=DIM)
    assert not (tmp_path / "a").exists()  # the folders it made went, parents included
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OSError):
        SAPIndex.create(empty, dim=DIM)
    assert empty.is_dir() and os.listdir(empty) == []  # the user's folder stays, emptied of what it made


def test_a_creator_waiting_for_another_finds_its_index_and_keeps_it(tmp_path):
    path = tmp_path / "idx"
    path.mkdir()
    racer = IndexLock.acquire(path)  # another process, in the middle of creating an index here
    with pytest.raises(IndexLockedError, match=r"already open for writing by process pid=\d+"):
        SAPIndex.create(path, dim=DIM)
    with pytest.raises(IndexLockTimeoutError, match=r"waited 0.2 s"):
        SAPIndex.create(path, dim=DIM, timeout=0.2)
    racer.release()
    first = SAPIndex.create(path, dim=DIM)  # only a lock file there: it was empty
    with pytest.raises(IndexExistsError, match="already holds an index"):
        SAPIndex.create(path, dim=DIM)
    first.add_pages([_page(0)], "doc")
    threading.Timer(0.3, first.close).start()
    with pytest.raises(IndexExistsError, match="already holds an index"):
        SAPIndex.create(path, dim=DIM, timeout=30)
    with SAPIndex.open(path, timeout=30) as index:
        assert index.documents() == ["doc"]


def test_discarding_a_new_index_removes_it_and_refuses_an_opened_one(tmp_path):
    path = tmp_path / "idx"
    index = SAPIndex.create(path, dim=DIM)
    index.add_pages([_page(1)], "doc")
    discard_new(index)
    assert not path.exists()
    SAPIndex.create(path, dim=DIM).close()
    with SAPIndex.open(path) as opened:
        with pytest.raises(ValueError, match="opened, not created"):
            discard_new(opened)
    assert (path / "manifest.json").is_file()


def _page(seed: int):
    import torch

    from sap_rag.index.index import pruned_page

    x = np.random.default_rng(seed).standard_normal((3, DIM)).astype(np.float32)
    return pruned_page(torch.from_numpy(x))


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sap_rag.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )


def test_racing_cli_first_runs_both_succeed_and_keep_the_index(tmp_path, capsys):
    page = tmp_path / "page.png"
    make_page(3, text="quarterly revenue by region").save(page)
    for trial in range(2):  # each run loads a model: two trials keep the suite short (the API test does six)
        index = tmp_path / f"idx{trial}"
        runs = [_cli("index", str(page), "--index", str(index), "--model", "tiny:colqwen2") for _ in range(2)]
        results = [run.communicate(timeout=300) for run in runs]
        for run, (out, err) in zip(runs, results):
            assert run.returncode == 0, err  # both: one creates, the other waits and finds it
            assert "index: 1 documents, 1 pages" in out
        with SAPIndex.open(index, read_only=True) as opened:
            assert len(opened.documents()) == 1 and opened.check().ok
    # the CLI's search prints each hit's text and relevance; --json carries them with the page id
    assert main(["search", "revenue", "--index", str(index), "-k", "1"]) == 0
    table = capsys.readouterr().out
    assert "relevance" in table.splitlines()[-3]  # the header, then the hit and its text
    assert "page 1 of page.png" in table  # the page's text (its label: an image has no text layer)
    assert main(["search", "revenue", "--index", str(index), "-k", "1", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["page_id"] == f"{row['doc_id']}:p1" and row["text"] == "page 1 of page.png"
    assert 0.0 <= row["relevance"] <= 1.0 and row["score"] > 0


def test_a_failed_first_cli_run_removes_its_new_index_but_not_a_racers(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    index = tmp_path / "idx"
    code = main(["index", str(bad), "--index", str(index), "--model", "tiny:colqwen2", "--skip-errors"])
    assert code != 0 or not index.exists()
    assert not index.exists()  # nothing was indexed: the new index went
    capsys.readouterr()
