"""Distributed indexing benchmark: pages/s of the single-process path and of Ray with 1 and 2 workers.

The sample PDFs (examples/data) are copied ``--copies`` times, each copy made distinct (a comment
appended after ``%%EOF``, so each is a new document with its own content hash), and indexed into
a fresh embedded index by:

- ``SAPIndex.add_documents`` (one process);
- ``sap_rag.distributed.index_with_ray`` on a local Ray (``ray.init(num_cpus=--cpus)``) with 1 and
  with 2 encoder actors (``--workers``).

Ray starts once before the timed runs; each run's time covers listing, checking, rendering,
encoding, pruning and committing (and the actors' model loads). Run ``python bench/distributed.py
--copies 4`` for a quick check. Needs ``pip install 'sap-rag[ray]'``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sap_rag import load_encoder  # noqa: E402
from sap_rag.distributed import RayOptions, index_with_ray  # noqa: E402
from sap_rag.index import SAPIndex  # noqa: E402


def _inputs(folder: Path, copies: int) -> int:
    folder.mkdir(parents=True)
    count = 0
    for pdf in sorted((ROOT / "examples" / "data").glob("*.pdf")):
        data = pdf.read_bytes()
        for c in range(copies):
            (folder / f"{pdf.stem}-{c}.pdf").write_bytes(data + f"\n% copy {c}\n".encode())
            count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10, help="copies of each sample PDF")
    parser.add_argument("--model", default="tiny:colqwen2")
    parser.add_argument("--workers", default="1,2", help="comma-separated actor counts")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import ray

    work = Path(tempfile.mkdtemp(prefix="sap-bench-dist-"))
    rows = []
    try:
        files = _inputs(work / "in", args.copies)
        encoder = load_encoder(args.model, batch_size=args.batch_size)
        started = time.perf_counter()
        with SAPIndex.create(work / "single", encoder=encoder) as index:
            report = index.add_documents([work / "in"], batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        rows.append({"path": "single process", "workers": 1, "pages": report.pages, "seconds": seconds})
        print(f"single process: {report.pages} pages in {seconds:.1f} s", flush=True)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        for workers in (int(w) for w in args.workers.split(",")):
            started = time.perf_counter()
            with SAPIndex.create(work / f"ray-{workers}", encoder=encoder) as index:
                report = index_with_ray(
                    index, [work / "in"], ray=RayOptions(workers=workers), batch_size=args.batch_size
                )
            seconds = time.perf_counter() - started
            rows.append({"path": "Ray Data", "workers": workers, "pages": report.pages, "seconds": seconds})
            print(f"ray, {workers} workers: {report.pages} pages in {seconds:.1f} s", flush=True)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print()
    print("command: python bench/distributed.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"{files} PDFs, model {args.model}, local Ray with {args.cpus} CPUs")
    print()
    print("| path | encoder actors | pages | seconds | pages/s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['path']} | {r['workers']} | {r['pages']} | {r['seconds']:.1f} | {r['pages'] / r['seconds']:.2f} |")


if __name__ == "__main__":
    main()
