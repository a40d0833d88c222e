"""What SAP scoring costs at encode time, against plain encoding, measured in one run.

Three ways to encode the same pages with the same random model of realistic shape:

- plain: the model's own forward (SDPA everywhere, no attention weights);
- sap: SAP's encoder (eager attention on the window's layers only, each reduced to N in-degrees
  as it is produced; SDPA elsewhere);
- naive: eager attention with ``output_attentions=True`` on every layer, in-degrees computed from
  the returned maps afterwards.

Timings are of the model forward on a preprocessed batch (the image processor's work is the
same in every mode and would only dilute the ratios). Each mode runs in its own child process
so memory numbers do not leak into each other, and the modes take turns over several rounds so
a change in machine load hits all of them alike. Time is
the median over rounds of each child's median wall time per forward after a warm-up; memory is
the peak resident set during those forwards (the kernel's high-water mark, reset after warm-up),
both as the whole process and as the increase over the resident set before the forwards
(weights and runtime excluded); the median over rounds of each.

Targets (issue 2): sap at most 1.15x the time and 1.2x the peak memory of plain.

The default shape keeps ColQwen2's proportions (head dim 128, MLP 5.83x hidden, 2 KV heads) at
8 layers and hidden 512 with ~768 visual tokens; the vision tower stays tiny, which inflates the
text model's share and so SAP's relative cost. ``--hidden 256 --heads 8 --mlp-ratio 4`` is the
smallest shape the issue allows (head dim 32: attention is a far larger share than in real models).

    python bench/encode_overhead.py
    python bench/encode_overhead.py --hidden 256 --heads 8 --mlp-ratio 4
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
        intermediate=int(args.mlp_ratio * args.hidden),
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
    # The processor's work is the same in every mode: done once, outside the timing.
    started = time.perf_counter()
    batch = encoder.preprocess([page] * args.batch)
    preprocess_seconds = time.perf_counter() - started

    def run() -> int:
        if mode == "plain":
            return encoder.encode_processed(batch, indegree_layers="none")[0].num_tokens
        if mode == "sap":
            return encoder.encode_processed(batch)[0].num_tokens
        return len(encoder.naive_indegree(batch)[0][window[0]])

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
        "preprocess_seconds": preprocess_seconds,
        "peak_mb": peak / 1024,
        "increase_mb": (peak - base) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-ratio", type=float, default=5.83, help="intermediate / hidden (ColQwen2: 8960/1536)")
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=768, help="visual tokens per page")
    parser.add_argument("--batch", type=int, default=1, help="pages per forward")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per child")
    parser.add_argument("--rounds", type=int, default=3, help="children per mode, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return

    env = dict(os.environ)
    # A fixed mmap threshold makes freed large buffers go back to the OS, so the peak is measurable.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", mode, *sys.argv[1:]]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = {}
    for mode, results in runs.items():
        rows[mode] = dict(results[0])
        for key in ("seconds", "peak_mb", "increase_mb"):
            rows[mode][key] = statistics.median(r[key] for r in results)

    plain = rows["plain"]
    print(
        f"model: ColQwen2-shaped, {args.layers} layers, hidden {args.hidden}, {args.heads} heads "
        f"({args.kv_heads} KV), MLP {int(args.mlp_ratio * args.hidden)}; "
        f"{plain['tokens']} visual tokens/page, batch {args.batch}, SAP window {plain['window']}, "
        f"{args.threads} threads, {args.rounds} rounds x {args.repeats} forwards"
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
    print(f"(the processor, outside the timings above, took {plain['preprocess_seconds']:.2f} s per batch)")
    sap = rows["sap"]
    ok_time = sap["seconds"] <= 1.15 * plain["seconds"]
    ok_mem = sap["peak_mb"] <= 1.2 * plain["peak_mb"]
    print(f"\ntargets: time <= 1.15x plain: {'met' if ok_time else 'MISSED'}; ", end="")
    print(f"peak memory <= 1.2x plain: {'met' if ok_mem else 'MISSED'}")


if __name__ == "__main__":
    main()
