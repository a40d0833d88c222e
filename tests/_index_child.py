"""A child process for the index tests (run as ``python _index_child.py <command> ...``).

Commands:
    search INDEX QUERIES.npy K      open the index, print the hits of each query as JSON lines
    hold INDEX                       open the index, print READY, wait until stdin closes
    add INDEX DIM PAGES VECTORS DOC PHASE
                                     add one big synthetic document through add_pages, printing a
                                     line after every engine write; at PHASE (``upsert:N`` after the
                                     N-th write, ``commit`` just before the registry commit,
                                     ``cleanup`` after the commit, before the replaced version is
                                     deleted, or ``none``) print READY and block until killed.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def _block() -> None:
    print("READY", flush=True)
    while True:  # the parent sends SIGKILL
        time.sleep(1)


def big_document(dim: int, pages: int, vectors: int, seed: int):
    """Deterministic synthetic pruned pages (also used by the parent to redo the same add)."""
    import torch

    from sap_rag.types import PrunedPage

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(pages):
        x = rng.standard_normal((vectors, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out.append(
            PrunedPage(torch.from_numpy(x), torch.zeros(vectors, 2), torch.arange(vectors), None, vectors, "sap")
        )
    return out


def main(argv: list[str]) -> None:
    from sap_rag.index import SAPIndex

    command, path = argv[0], argv[1]
    if command == "search":
        queries = np.load(argv[2])
        k = int(argv[3])
        with SAPIndex.open(path) as index:
            for hits in index.search_batch(list(queries), k=k):
                print(json.dumps([[h.doc_id, h.page_number, h.score, h.point_id] for h in hits]), flush=True)
    elif command == "hold":
        with SAPIndex.open(path):
            print("READY", flush=True)
            sys.stdin.read()
    elif command == "add":
        dim, pages, vectors, doc, phase = int(argv[2]), int(argv[3]), int(argv[4]), argv[5], argv[6]
        index = SAPIndex.open(path)
        backend, registry = index.backend, index._registry
        writes = 0
        upsert, commit, delete = backend.upsert, registry.commit, backend.delete

        def counting_upsert(points):
            nonlocal writes
            upsert(points)
            writes += 1
            print(f"WROTE {writes}", flush=True)
            if phase == f"upsert:{writes}":
                _block()

        def blocking_commit(record):
            if phase == "commit":
                _block()
            return commit(record)

        def blocking_delete(ids):
            if phase == "cleanup":
                _block()
            return delete(ids)

        backend.upsert = counting_upsert
        registry.commit = blocking_commit
        backend.delete = blocking_delete
        index.add_pages(big_document(dim, pages, vectors, seed=7), doc)
        print("DONE", flush=True)
        index.close()
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
