"""What SAP scoring costs at encode time, against plain encoding, measured in one run.

Three ways to encode the same pages with the same random model of realistic shape:

- plain: the model's own forward (SDPA everywhere, no attention weights);
- sap: SAP's encoder (eager attention on the window's layers only, each reduced to N in-degrees
  as it is produced; SDPA elsewhere);
- naive: eager attention with ``output_attentions=True`` on every layer, in-degrees computed from
  the returned maps afterwards.

Each mode runs in its own child process so memory numbers do not leak into each other. Time is
the median wall time of a page forward after a warm-up; memory is the peak resident set during
those forwards (the kernel's high-water mark, reset after warm-up), both as the whole process
and as the increase over the resident set before the forwards (weights and runtime excluded).

Targets (issue 2): sap at most 1.15x the time and 1.2x the peak memory of plain.

    python bench/encode_overhead.py                  # 8 layers, hidden 256, ~768 visual tokens
    python bench/encode_overhead.py --layers 12 --hidden 384 --repeats 7
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

MODES = ("plain", "sap", "naive")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def child(mode: str, args: argparse.Namespace) -> dict:
    import torch
    from PIL import Image

    from sap_rag.encoders.encoder import PageEncoder
    from sap_rag.encoders.families import get_family
    from sap_rag.encoders.tiny import TinySize, build_tiny

    torch.set_num_threads(args.threads)
    size = TinySize(
        layers=args.layers,
        hidden=args.hidden,
        heads=args.heads,
        kv_heads=args.kv_heads,
        intermediate=4 * args.hidden,
        vision_layers=2,
        vision_hidden=64,
        max_visual_tokens=args.tokens,
    )
    model, processor = build_tiny("colqwen2", size=size, seed=0)
    family = get_family("colqwen2")
    from sap_rag.calibration.window import default_window

    window = default_window("unknown", args.layers)
    encoder = PageEncoder(model, processor, family, spec="bench", window=window, batch_size=args.batch)
    # A page whose patch grid gives about `tokens` visual tokens (one token per 28x28 pixels).
    cols = max(1, int((args.tokens * 3 / 4) ** 0.5))
    rows = args.tokens // cols
    page = Image.new("RGB", (28 * cols, 28 * rows), "white")
    images = [page] * args.batch

    def run() -> int:
        if mode == "plain":
            return encoder.encode_pages(images, indegree_layers="none")[0].num_tokens
        if mode == "sap":
            return encoder.encode_pages(images)[0].num_tokens
        return len(encoder.naive_indegree(images)[0][0])

    tokens = run()  # warm-up
    gc.collect()
    base = _status_kb("VmRSS")
    _reset_peak()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = _status_kb("VmHWM")
    return {
        "mode": mode,
        "tokens": tokens,
        "window": list(window),
        "seconds": statistics.median(times),
        "peak_mb": peak / 1024,
        "increase_mb": (peak - base) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=768, help="visual tokens per page")
    parser.add_argument("--batch", type=int, default=1, help="pages per forward")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return

    env = dict(os.environ)
    # A fixed mmap threshold makes freed large buffers go back to the OS, so the peak is measurable.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    rows = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--child", mode, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])

    plain = rows["plain"]
    print(
        f"model: ColQwen2-shaped, {args.layers} layers, hidden {args.hidden}, {args.heads} heads; "
        f"{plain['tokens']} visual tokens/page, batch {args.batch}, SAP window {plain['window']}, "
        f"{args.threads} threads, median of {args.repeats}"
    )
    print("| mode | s/forward | x plain | peak RSS MB | x plain | forward increase MB | x plain |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in MODES:
        r = rows[mode]
        print(
            f"| {mode} | {r['seconds']:.3f} | {r['seconds'] / plain['seconds']:.2f} | {r['peak_mb']:.0f} | "
            f"{r['peak_mb'] / plain['peak_mb']:.2f} | {r['increase_mb']:.0f} | "
            f"{r['increase_mb'] / max(plain['increase_mb'], 1e-9):.2f} |"
        )
    sap = rows["sap"]
    ok_time = sap["seconds"] <= 1.15 * plain["seconds"]
    ok_mem = sap["peak_mb"] <= 1.2 * plain["peak_mb"]
    print(f"\ntargets: time <= 1.15x plain: {'met' if ok_time else 'MISSED'}; ", end="")
    print(f"peak memory <= 1.2x plain: {'met' if ok_mem else 'MISSED'}")


if __name__ == "__main__":
    main()
