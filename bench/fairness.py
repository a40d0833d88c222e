"""Writer fairness: can a writer get an index that a stream of readers keeps reopening?

Three reader processes each reopen the index read-only every 10 ms (open, one search, close) for
``--seconds``; meanwhile this process, the writer, tries to open it for writing again and again,
adds one small document, closes, and pauses 200 ms. Two writer modes:

- ``retry``: ``SAPIndex.open(path)`` without a timeout, retried every 10 ms after each refusal
  (the only way before opens could wait; readers retry too). This mode also runs on sap-rag
  versions without ``timeout=``: ``PYTHONPATH=<old checkout> python bench/fairness.py --mode retry``;
- ``wait``: ``SAPIndex.open(path, timeout=--timeout)``: the writer waits its turn, and readers
  that arrive while it waits queue behind it.

Prints, per mode: how many times the writer got the index, its wait per acquisition (p50, p99,
max, from its first try to holding the lock), refusals or timeouts, and the readers' opens (they
must keep being served). Run ``python bench/fairness.py --seconds 20`` (both modes; about a
minute with the interpreter starts). Not a test; the test suite checks the behaviour, not speed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))

DIM = 16

_READER = """
import sys, time
import numpy as np
from sap_rag.index import IndexLockedError, SAPIndex
path, seconds = sys.argv[1], float(sys.argv[2])
query = np.ones((2, {dim}), dtype=np.float32)
opens = refused = 0
print("READY", flush=True)
sys.stdin.readline()
stop = time.monotonic() + seconds
while time.monotonic() < stop:
    try:
        wait = {{"timeout": {reader_timeout}}} if {reader_timeout} else {{}}
        with SAPIndex.open(path, read_only=True, **wait) as index:
            index.search(query, k=1)
        opens += 1
    except IndexLockedError:
        refused += 1
    time.sleep(0.01)
print(opens, refused, flush=True)
"""


def _page(rng: np.random.Generator):
    import torch

    from sap_rag.index.index import pruned_page

    return pruned_page(torch.from_numpy(rng.standard_normal((3, DIM)).astype(np.float32)))


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(mode: str, seconds: float, readers: int, timeout: float, reader_timeout: float) -> dict[str, object]:
    from sap_rag.index import IndexLockedError, SAPIndex

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "idx"
        with SAPIndex.create(path, dim=DIM) as index:
            for i in range(5):
                index.add_pages([_page(rng)], f"base-{i}")
        script = _READER.format(dim=DIM, reader_timeout=reader_timeout if mode == "wait" else 0)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(path), str(seconds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
            for _ in range(readers)
        ]
        for proc in procs:
            assert proc.stdout.readline().strip() == "READY"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        time.sleep(0.5)  # let the stream start
        waits: list[float] = []
        refusals = 0
        stop = time.monotonic() + seconds - 0.5
        n = 0
        while time.monotonic() < stop:
            first_try = time.monotonic()
            while True:
                try:
                    index = SAPIndex.open(path, timeout=timeout) if mode == "wait" else SAPIndex.open(path)
                    break
                except IndexLockedError:
                    refusals += 1
                    if time.monotonic() >= stop:
                        index = None
                        break
                    time.sleep(0.01)
            if index is None:
                break
            waits.append(time.monotonic() - first_try)
            with index:
                index.add_pages([_page(rng)], f"w-{n}")
            n += 1
            time.sleep(0.2)
        counts = [proc.communicate(timeout=120)[0].split() for proc in procs]
    return {
        "mode": mode,
        "seconds": seconds,
        "writer_acquired": len(waits),
        "wait_p50_s": _percentile(waits, 50),
        "wait_p99_s": _percentile(waits, 99),
        "wait_max_s": max(waits) if waits else float("nan"),
        "writer_refusals": refusals,
        "reader_opens": sum(int(c[0]) for c in counts),
        "reader_refusals": sum(int(c[1]) for c in counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run (default 20)")
    parser.add_argument("--readers", type=int, default=3, help="reader processes (default 3)")
    parser.add_argument("--timeout", type=float, default=30.0, help="the writer's timeout in 'wait' mode")
    parser.add_argument("--reader-timeout", type=float, default=30.0, help="the readers' timeout")
    parser.add_argument("--mode", choices=["retry", "wait", "both"], default="both")
    args = parser.parse_args()
    modes = ["retry", "wait"] if args.mode == "both" else [args.mode]
    print(f"{args.readers} readers reopening every 10 ms, {args.seconds:g} s per mode")
    header = f"{'mode':6} {'acquired':>8} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'refused':>8} {'reader opens':>12}"
    print(header + f" {'r.refused':>9}")
    for mode in modes:
        r = run(mode, args.seconds, args.readers, args.timeout, args.reader_timeout)
        print(
            f"{r['mode']:6} {r['writer_acquired']:>8} {r['wait_p50_s']:7.3f} {r['wait_p99_s']:7.3f} "
            f"{r['wait_max_s']:7.3f} {r['writer_refusals']:>8} {r['reader_opens']:>12} "
            f"{r['reader_refusals']:>9}"
        )


if __name__ == "__main__":
    main()
