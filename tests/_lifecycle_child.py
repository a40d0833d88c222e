"""A child process for the lifecycle tests (run as ``python _lifecycle_child.py <command> ...``).

Commands:
    reader INDEX QUERIES.npy K   open the index read-only, print READY, wait for a line on stdin,
                                 print the hits of each query as one JSON line, wait until stdin closes
    add-and-exit INDEX DIM       open the index for writing, add one page, exit without close()
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> None:
    from sap_rag.index import SAPIndex

    command, path = argv[0], argv[1]
    if command == "reader":
        queries = list(np.load(argv[2]))
        k = int(argv[3])
        index = SAPIndex.open(path, read_only=True)
        print("READY", flush=True)
        sys.stdin.readline()
        hits = index.search_batch(queries, k=k)
        print(json.dumps([[[h.page_id, h.score, h.text] for h in row] for row in hits]), flush=True)
        sys.stdin.read()
        index.close()
    elif command == "add-and-exit":
        import torch

        from sap_rag.index.index import pruned_page

        index = SAPIndex.open(path)
        index.add_pages([pruned_page(torch.eye(int(argv[2]))[:2])], "from-child")
        sys.exit(0)  # no close(): the finalizer releases the engine and the lock at exit
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
