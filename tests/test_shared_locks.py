"""Waiting for an index: bounded waits that name the holder, no leaked lock, no starved writer."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sap_rag.index import IndexLockedError, IndexLockTimeoutError, IndexStorageError, SAPIndex
from sap_rag.index import lock as lock_module
from sap_rag.index.lock import IndexLock

DIM = 16
CHILD = Path(__file__).with_name("_shared_child.py")


def _child(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHILD.parent.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _index(path: Path) -> Path:
    import torch

    from sap_rag.index.index import pruned_page

    rng = np.random.default_rng(0)
    with SAPIndex.create(path, dim=DIM) as index:
        for i in range(3):
            index.add_pages([pruned_page(torch.from_numpy(rng.standard_normal((3, DIM)).astype(np.float32)))], f"d{i}")
    return path


def test_a_writer_open_that_fails_writing_the_lock_file_releases_the_lock(tmp_path, monkeypatch):
    path = _index(tmp_path / "idx")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lock_module.os, "pwrite", disk_full)
    with pytest.raises(IndexStorageError, match=r"No space left on device.*free some space"):
        SAPIndex.open(path)
    monkeypatch.undo()
    with SAPIndex.open(path) as index:  # the failed open left no lock behind, in this process either
        assert len(index.documents()) == 3
    monkeypatch.setattr(lock_module.os, "ftruncate", disk_full)
    with pytest.raises(IndexStorageError):
        IndexLock.acquire(path)
    monkeypatch.undo()
    IndexLock.acquire(path).release()


def test_a_stopped_reader_inside_its_load_makes_waits_time_out_naming_it(tmp_path, monkeypatch):
    path = _index(tmp_path / "idx")
    open_reader = SAPIndex.open(path, read_only=True)  # opened before the other reader stops
    monkeypatch.setattr(IndexLock, "ENGINE_WAIT", 1.0)
    child = _child("engine-hold", str(path))
    try:
        assert child.stdout.readline().strip() == "READY", child.stderr.read()
        os.kill(child.pid, signal.SIGSTOP)
        outcome: dict[str, object] = {}

        def attempt(name, call):
            try:
                outcome[name] = call()
            except Exception as exc:  # the test inspects it
                outcome[name] = exc

        # in threads, so that a wait without a limit fails the test instead of hanging it
        threads = [
            threading.Thread(target=attempt, args=("reader", lambda: SAPIndex.open(path, read_only=True)), daemon=True),
            threading.Thread(target=attempt, args=("writer", lambda: SAPIndex.open(path, timeout=0.5)), daemon=True),
            threading.Thread(target=attempt, args=("close", open_reader.close), daemon=True),
        ]
        started = time.monotonic()
        threads[0].start()
        # the reader first: a writer already waiting would (rightly) turn a reader without a timeout
        # away at once, before it reaches the stopped reader's engine lock
        time.sleep(0.5)
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "a wait did not end"
        assert time.monotonic() - started < 20
        reader, writer = outcome["reader"], outcome["writer"]
        assert isinstance(reader, IndexLockTimeoutError)
        assert f"process {child.pid} (stopped" in str(reader) and "loading or closing" in str(reader)
        assert isinstance(writer, IndexLockTimeoutError) and isinstance(writer, IndexLockedError)
        assert f"{child.pid} (stopped" in str(writer) and "open read-only" in str(writer)
        assert outcome["close"] is None  # the other reader's close went ahead
    finally:
        child.kill()
        child.wait(timeout=30)
    with SAPIndex.open(path, timeout=5) as index:  # the stopped reader is gone: all is well
        assert index.check().ok


def test_an_open_waits_its_turn_up_to_its_timeout(tmp_path):
    path = _index(tmp_path / "idx")
    reader = SAPIndex.open(path, read_only=True)
    with pytest.raises(IndexLockedError, match=r"open read-only .*\(process \d+ \(this process\)\)"):
        SAPIndex.open(path)
    started = time.monotonic()
    with pytest.raises(IndexLockTimeoutError, match=r"waited 0.3 s"):
        SAPIndex.open(path, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    threading.Timer(0.5, reader.close).start()
    with SAPIndex.open(path, timeout=20) as writer:  # gets it once the reader lets go
        assert writer.check().ok
        with pytest.raises(IndexLockTimeoutError, match=r"open for writing by process pid=\d+"):
            SAPIndex.open(path, read_only=True, timeout=0.2)
    with pytest.raises(ValueError, match="timeout"):
        SAPIndex.open(path, timeout=-1)


def test_readers_arriving_after_a_waiting_writer_queue_behind_it(tmp_path):
    path = _index(tmp_path / "idx")
    first = SAPIndex.open(path, read_only=True)
    got: list[SAPIndex] = []
    writer = threading.Thread(target=lambda: got.append(SAPIndex.open(path, timeout=30)), daemon=True)
    writer.start()
    time.sleep(0.3)  # the writer is waiting now
    with pytest.raises(IndexLockedError, match=r"a writer \(process \d+ \(this process\)\) is waiting"):
        SAPIndex.open(path, read_only=True)  # a new reader does not slip in beside the first
    first.close()
    writer.join(timeout=30)
    assert got and not got[0].read_only
    got[0].close()


def test_a_writer_gets_the_index_within_its_timeout_under_a_stream_of_readers(tmp_path):
    path = _index(tmp_path / "idx")
    readers = [_child("reader-loop", str(path), "6") for _ in range(3)]
    try:
        for child in readers:
            assert child.stdout.readline().strip() == "READY", child.stderr.read()
        time.sleep(1.0)  # the stream is flowing
        started = time.monotonic()
        with SAPIndex.open(path, timeout=30) as writer:
            waited = time.monotonic() - started
            writer.delete("d0")
        counts = [int(child.communicate(timeout=120)[0].strip().splitlines()[-1]) for child in readers]
    finally:
        for child in readers:
            child.kill()
    assert waited < 30
    assert all(n > 0 for n in counts)  # the readers were served too
    with SAPIndex.open(path, read_only=True) as index:
        assert index.documents() == ["d1", "d2"]
