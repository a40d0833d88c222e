"""Run a command under a hard memory limit (a Linux memory cgroup) and report what it used.

The kernel charges a cgroup for its processes' anonymous memory *and* the page cache they touch
(memory-mapped vector files included). At the limit it first reclaims clean file pages and writes
back dirty ones; only memory it cannot reclaim makes it kill the process. A command that finishes
under ``--limit-gb`` therefore needs no more than that, whatever ``ps`` showed as RSS without a
limit. Needs root (or a delegated cgroup) on cgroup v1 or v2. Not a test.

    python bench/memory_cap.py --limit-gb 2.3 -- python bench/search.py --pages 0 --big-pages 0 \\
        --growth 100000 --growth-variants bounded
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def _events(path: Path) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-gb", type=float, required=True, help="hard memory limit of the command, GB")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    limit = int(args.limit_gb * 1e9)
    name = f"sap-rag-cap-{os.getpid()}"
    if (V1 / "memory.limit_in_bytes").exists():
        group, version = V1 / name, 1
    elif (V2 / "cgroup.controllers").exists() and "memory" in _read(V2 / "cgroup.controllers"):
        group, version = V2 / name, 2
    else:
        raise SystemExit("no writable memory cgroup on this machine (cgroup v1 or v2 with the memory controller)")
    try:
        group.mkdir()
    except OSError as exc:
        raise SystemExit(f"cannot create the cgroup {group}: {exc} (run as root, or in a delegated cgroup)") from None
    try:
        if version == 1:
            (group / "memory.limit_in_bytes").write_text(str(limit))
            swap = group / "memory.memsw.limit_in_bytes"
            if swap.exists():
                try:
                    swap.write_text(str(limit))  # no escape into swap
                except OSError:
                    pass
        else:
            (group / "memory.max").write_text(str(limit))
            (group / "memory.swap.max").write_text("0")
        procs = str(group / "cgroup.procs")

        def enter() -> None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

        started = time.perf_counter()
        code = subprocess.run(command, preexec_fn=enter).returncode
        seconds = time.perf_counter() - started
        if version == 1:
            peak = int(_read(group / "memory.max_usage_in_bytes") or 0)
            oom = _events(group / "memory.oom_control").get("oom_kill", 0)
            hits = int(_read(group / "memory.failcnt") or 0)
        else:
            peak = int(_read(group / "memory.peak") or 0)
            events = _events(group / "memory.events")
            oom, hits = events.get("oom_kill", 0), events.get("max", 0)
        print(
            f"\nmemory cap {args.limit_gb:g} GB (cgroup v{version}): exit {code}, {seconds:.0f} s, "
            f"peak charged {peak / 1e9:.2f} GB, times at the limit {hits}, OOM kills {oom}",
            file=sys.stderr,
        )
        return code
    finally:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
