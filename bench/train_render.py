"""Training time with each epoch's new pages drawn between epochs or in a background thread.

The toy recipe's second phase draws 1,280 new pages every epoch (at 1, 2 or 4x, shrunk to the page
size). ``TrainConfig.prefetch_pages`` draws the next epoch's pages in a background thread while
this one trains; without it they are drawn between epochs. Each mode runs the same phase-2
configuration from the toy checkpoint's weights for ``--epochs`` epochs (48 steps each, one
held-out evaluation per epoch) in its own child process, so thread settings do not leak. The time
is the training loop's wall time (the first epoch's pages, drawn before it in every mode, are not
counted), per step and as a ratio to the baseline: pages drawn between epochs, two threads (how
the recipe ran before).

Run ``python bench/train_render.py`` (about 15 minutes on 2 cores, nothing else running).
Not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOY_MODEL = ROOT / "models" / "sap-rag-toy-colqwen2"
MODES = {  # name -> (prefetch_pages, threads)
    "between epochs, 2 threads (baseline)": (False, 2),
    "between epochs, 1 thread": (False, 1),
    "background, 2 threads": (True, 2),
    "background, 1 thread": (True, 1),
}


def child(prefetch: bool, threads: int, epochs: int) -> dict:
    import dataclasses

    from sap_rag.train.loop import TrainConfig, train

    defaults = TrainConfig()
    config = dataclasses.replace(
        defaults,
        shape=dataclasses.replace(defaults.shape, vision_width=64),
        init_from=str(TOY_MODEL),
        train_seeds=tuple(range(1000, 1008)),
        epochs=epochs,
        lr=3e-4,
        warmup_steps=20,
        smooth_max_steps=0,
        cover_steps=0,
        resample=(1, 2, 4),
        company_batches=0.5,
        token_keep_min=0.1,
        token_span_share=0.5,
        threads=threads,
        prefetch_pages=prefetch,
    )
    curve = train(config, show_progress=False).curve
    return {"steps": curve[-1]["step"], "seconds": curve[-1]["elapsed_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per mode (default 3: two epoch changes)")
    parser.add_argument("--child", nargs=2, metavar=("PREFETCH", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0] == "1", int(args.child[1]), args.epochs)))
        return 0
    rows = {}
    for name, (prefetch, threads) in MODES.items():
        command = [sys.executable, __file__, "--epochs", str(args.epochs), "--child", str(int(prefetch)), str(threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    base = next(iter(rows.values()))
    print("| pages drawn | steps | seconds | s/step | time vs baseline |\n|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        ratio = row["seconds"] / base["seconds"]
        print(
            f"| {name} | {row['steps']} | {row['seconds']:.0f} | {row['seconds'] / row['steps']:.2f} | {ratio:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
