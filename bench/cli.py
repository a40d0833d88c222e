"""Command-line latency: ``sap-rag`` commands timed as whole processes, as a user runs them.

Each row is the median wall time of ``--repeats`` runs of one command, and its ratio to two
baselines measured in the same run on the same machine: ``python -c pass`` (an empty
interpreter) and ``python -c "import torch"`` (the floor of any command that runs a model). A
loaded machine inflates every row alike, so compare ratios across machines, seconds within one.

The index is built once (``sap-rag index examples/data``, not timed) unless ``--index`` names an
existing one. ``--model`` is the model to index with (default: the toy checkpoint the demo uses).
The library's cache (compiled query encoders) is a temporary folder, filled by one untimed search;
``search (full model)`` turns it off (``SAP_RAG_NO_QUERY_CACHE=1``), as a first search would run.

Run ``python bench/cli.py`` (about a minute) or ``python bench/cli.py --repeats 5 --out
bench/results/cli.md``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOY_MODEL = "models/sap-rag-toy-colqwen2"

PYTHON = sys.executable
_SCRIPT = Path(PYTHON).parent / "sap-rag"  # the console script a user runs, when installed
SAP_RAG = [str(_SCRIPT)] if _SCRIPT.is_file() else [PYTHON, "-m", "sap_rag.cli.main"]


def timed(
    argv: list[str], repeats: int, expect: int | None = 0, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """(median, min) wall seconds of running ``argv`` ``repeats`` times; checks its exit code."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
        times.append(time.perf_counter() - start)
        if expect is not None and done.returncode != expect:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}, expected {expect}:\n{done.stderr[-2000:]}")
    return statistics.median(times), min(times)


def build_index(directory: Path, model: str) -> None:
    done = subprocess.run(
        [*SAP_RAG, "index", "examples/data", "--index", str(directory), "--model", model],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"building the index failed:\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per command (median reported)")
    parser.add_argument("--index", type=Path, help="an existing index (default: build one from examples/data)")
    parser.add_argument("--model", default=TOY_MODEL, help=f"model to build the index with (default {TOY_MODEL})")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here, and the rows as .json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SAP_RAG_CACHE_DIR"] = str(Path(tmp) / "cache")  # every child process inherits it
        no_cache = {**os.environ, "SAP_RAG_NO_QUERY_CACHE": "1"}
        index = args.index or Path(tmp) / "idx"
        if args.index is None:
            build_index(index, args.model)
        hit = json.loads(
            subprocess.run(
                [*SAP_RAG, "search", "revenue", "--index", str(index), "-k", "1", "--json"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
            ).stdout
        )[0]
        out_png = Path(tmp) / "overlay.png"
        search = [*SAP_RAG, "search", "revenue by region"]
        commands = [
            ("python -c pass (baseline)", [PYTHON, "-c", "pass"], 0, None),
            ("python -c 'import torch' (model floor)", [PYTHON, "-c", "import torch"], 0, None),
            ("sap-rag --help", [*SAP_RAG, "--help"], 0, None),
            (
                "sap-rag search -k 0 (argument error)",
                [*SAP_RAG, "search", "q", "--index", str(index), "-k", "0"],
                2,
                None,
            ),
            ("sap-rag search (missing index)", [*SAP_RAG, "search", "q", "--index", str(Path(tmp) / "none")], 1, None),
            ("sap-rag info", [*SAP_RAG, "info", "--index", str(index)], 0, None),
            ("sap-rag search", [*search, "--index", str(index), "-k", "3"], 0, None),
            ("sap-rag search (full model, no cache)", [*search, "--index", str(index), "-k", "3"], 0, no_cache),
            (
                "sap-rag show",
                [*SAP_RAG, "show", "--index", str(index), "--doc", hit["doc_id"], "--out", str(out_png)],
                0,
                None,
            ),
        ]
        rows = []
        for name, argv, expect, env in commands:
            median, best = timed(argv, args.repeats, expect, env)
            rows.append({"command": name, "median_s": median, "min_s": best})
            print(f"{name:45s} {median:7.2f} s", file=sys.stderr)
    base, floor = rows[0]["median_s"], rows[1]["median_s"]
    lines = [
        f"`python bench/cli.py --repeats {args.repeats}` on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}, model {args.model}",
        "",
        "| command | median s | min s | x `python -c pass` | x `import torch` |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['command']} | {row['median_s']:.2f} | {row['min_s']:.2f} | "
            f"{row['median_s'] / base:.1f} | {row['median_s'] / floor:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
