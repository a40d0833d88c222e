"""A child process for the shared-use tests (``python _shared_child.py <command> ...``).

Commands:
    create DIM DOCS              print READY; then for each line INDEX on stdin: SAPIndex.create(INDEX)
                                 (no wait), close it at once, reopen it and add DOCS one-page
                                 documents; print "CREATED", or "LOST <error class>"
    engine-hold INDEX            take a reader's lock and the readers' engine section (as a load
                                 does), print READY and sleep until killed (the parent stops it)
    hold INDEX MODE              open the index (MODE: read or write), print READY, wait for stdin to close
    reader-loop INDEX SECONDS    reopen the index read-only every 10 ms (open, one search, close) for
                                 SECONDS; print the number of opens
    search INDEX DIM             open the index read-only, search, print the hits' page ids as JSON
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def _page(rng: np.random.Generator, dim: int):
    import torch

    from sap_rag.index.index import pruned_page

    x = rng.standard_normal((4, dim)).astype(np.float32)
    return pruned_page(torch.from_numpy(x / np.linalg.norm(x, axis=1, keepdims=True)))


def main(argv: list[str]) -> int:
    from sap_rag.index import IndexExistsError, IndexLockedError, SAPIndex
    from sap_rag.index.lock import IndexLock

    command, path = argv[0], argv[1]
    if command == "create":
        dim, docs = int(argv[1]), int(argv[2])
        page = _page(np.random.default_rng(0), dim)  # imports done before the races start
        print("READY", flush=True)
        for line in sys.stdin:
            target = line.strip()
            try:
                SAPIndex.create(target, dim=dim).close()
            except (IndexExistsError, IndexLockedError) as exc:
                print(f"LOST {type(exc).__name__}", flush=True)
                continue
            with SAPIndex.open(target, timeout=30) as index:
                for i in range(docs):
                    index.add_pages([page], f"doc-{i}")
            print("CREATED", flush=True)
    elif command == "engine-hold":
        lock = IndexLock.acquire(path, shared=True)
        with lock.engine_section():
            print("READY", flush=True)
            while True:
                time.sleep(1)
    elif command == "hold":
        with SAPIndex.open(path, read_only=argv[2] == "read"):
            print("READY", flush=True)
            sys.stdin.read()
    elif command == "reader-loop":
        seconds = float(argv[2])
        query = np.ones((2, 16), dtype=np.float32)
        opens = 0
        print("READY", flush=True)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            try:
                with SAPIndex.open(path, read_only=True, timeout=60) as index:
                    index.search(query, k=1)
                opens += 1
            except IndexLockedError:
                pass
            time.sleep(0.01)
        print(opens, flush=True)
    elif command == "search":
        dim = int(argv[2])
        with SAPIndex.open(path, read_only=True) as index:
            hits = index.search(np.ones((2, dim), dtype=np.float32), k=3)
        print(json.dumps([h.page_id for h in hits]), flush=True)
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
