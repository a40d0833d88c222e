"""Real disks: a read-only mount, a full disk, a writer killed inside its SQLite commit.

The mounts need root (``mount``); where they cannot be made the tests are skipped with the reason.
A read-only open on a full disk runs in a child process, so a SIGBUS fails the test instead of
killing pytest.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sap_rag.index import IndexLockedError, IndexReadOnlyError, SAPIndex

DIM = 16
CHILD = Path(__file__).with_name("_shared_child.py")


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(CHILD.parent.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


def _index(path: Path) -> list[str]:
    """A small index; returns the page ids of its search for ones((2, DIM))."""
    import torch

    from sap_rag.index.index import pruned_page

    rng = np.random.default_rng(0)
    with SAPIndex.create(path, dim=DIM) as index:
        for i in range(4):
            pages = [rng.standard_normal((3, DIM)).astype(np.float32) for _ in range(2)]
            index.add_pages([pruned_page(torch.from_numpy(p)) for p in pages], f"d{i}", texts=[f"d{i} a", f"d{i} b"])
    with SAPIndex.open(path, read_only=True) as index:
        return [h.page_id for h in index.search(np.ones((2, DIM), dtype=np.float32), k=3)]


def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a mount needs root")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(args)}): {done.stderr.strip()}")


@pytest.fixture
def mounts():
    made: list[Path] = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_an_index_on_a_read_only_mount_can_be_searched(tmp_path, mounts, monkeypatch):
    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    expected = _index(source / "idx")
    _mount("--bind", str(source), str(view))
    mounts.append(view)
    _mount("-o", "remount,bind,ro", str(view))
    with pytest.raises(OSError) as refused:
        (view / "probe").write_text("x")
    assert refused.value.errno == errno.EROFS
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("SAP_RAG_SCRATCH", str(scratch))
    before = _snapshot(source / "idx")
    with SAPIndex.open(view / "idx", read_only=True) as index:
        hits = index.search(np.ones((2, DIM), dtype=np.float32), k=3)
        assert [h.page_id for h in hits] == expected
        assert index.get_pages(["d1:p2"])[0].text == "d1 b"
        assert index.check().ok and len(index.documents()) == 4
        # the lock is the same file through both paths: a writer on the writable one must wait
        with pytest.raises(IndexLockedError, match="open read-only"):
            SAPIndex.open(source / "idx")
        with SAPIndex.open(view / "idx", read_only=True) as second:  # readers share, as anywhere
            assert len(second) == 8
    assert os.listdir(scratch) == []  # the private copies went with the opens
    assert _snapshot(source / "idx") == before  # nothing in the index changed
    with pytest.raises(IndexReadOnlyError, match=r"read-only folder or mount.*read_only=True"):
        SAPIndex.open(view / "idx")
    SAPIndex.open(source / "idx").close()


def _fill(folder: Path) -> None:
    """Fill the file system holding ``folder`` to the last block."""
    with open(folder / "filler", "wb") as handle:
        block = b"\0" * (1 << 16)
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    for size in (4096, 512, 1):
        for i in range(10_000):
            try:
                (folder / f"f{size}-{i}").write_bytes(b"x" * size)
            except OSError:
                break


def _small_fs(kind: str, point: Path, tmp_path: Path, mounts: list[Path]) -> None:
    point.mkdir()
    if kind == "tmpfs":
        _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point))
    else:
        image = tmp_path / "disk.img"
        with open(image, "wb") as handle:
            handle.truncate(16 << 20)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 image: {made.stderr.strip()}")
        _mount("-o", "loop", str(image), str(point))
    mounts.append(point)


@pytest.mark.parametrize("kind", ["ext4", "tmpfs"])
def test_a_reader_on_a_full_disk_gets_its_results_or_one_line_never_a_signal(tmp_path, mounts, kind):
    expected = _index(tmp_path / "idx")
    disk = tmp_path / "disk"
    _small_fs(kind, disk, tmp_path, mounts)
    copied = subprocess.run(["cp", "-a", "--sparse=always", str(tmp_path / "idx"), str(disk)], capture_output=True)
    assert copied.returncode == 0, copied.stderr
    _fill(disk)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    search = [sys.executable, str(CHILD), "search", str(disk / "idx"), str(DIM)]
    # room elsewhere for a private copy: the results
    done = subprocess.run(search, capture_output=True, text=True, env=_env(SAP_RAG_SCRATCH=str(scratch)), timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == str(expected).replace("'", '"')
    assert os.listdir(scratch) == []
    # no room anywhere: a clear error, and the process ends normally (no SIGBUS)
    done = subprocess.run(search, capture_output=True, text=True, env=_env(SAP_RAG_SCRATCH=str(disk)), timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sap_rag.index.errors.IndexStorageError:") and "free some space" in last


_KILL_IN_COMMIT = textwrap.dedent(
    """
    import os, sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("PRAGMA cache_size=1")  # pages go to the file (and the rollback journal) before COMMIT
    db.execute("BEGIN IMMEDIATE")
    for i in range(3000):
        db.execute("INSERT INTO documents(doc_id, gen, num_pages, num_vectors, images, metadata, added_at) "
                   "VALUES (?, ?, 1, 1, '[]', '{}', 0)", (f"half-{i}-" + "x" * 200, 10_000 + i))
    os.kill(os.getpid(), 9)  # killed inside the transaction: a hot journal is left
    """
)


def test_a_read_only_open_after_a_writer_died_in_its_commit_says_to_open_it_for_writing(tmp_path):
    path = tmp_path / "idx"
    _index(path)
    registry = path / "registry.sqlite"
    killed = subprocess.run([sys.executable, "-c", _KILL_IN_COMMIT, str(registry)], capture_output=True)
    assert killed.returncode == -9
    assert (path / "registry.sqlite-journal").stat().st_size > 0
    with pytest.raises(IndexReadOnlyError, match=r"interrupted.*open it once for writing"):
        SAPIndex.open(path, read_only=True)
    SAPIndex.open(path).close()  # a writer's open rolls the transaction back
    with SAPIndex.open(path, read_only=True) as index:
        assert index.documents() == ["d0", "d1", "d2", "d3"] and index.check().ok
