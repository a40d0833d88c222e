#!/usr/bin/env bash
# The recipe of models/sap-rag-toy-colqwen2 (see docs/toy-model.md), about an hour on 2 CPU cores:
#  1. from scratch, 1,500 steps on 8 fixed corpora (1,280 pages seen again and again): the model
#     learns to read titles (it also learns those pages by heart);
#  2. from phase 1's best weights, 1,056 steps on new pages every epoch (none seen twice), drawn at
#     1, 2 or 4x and shrunk to the page size as a PDF page reaches the model, half of the corpora
#     cut company by company (hard negatives), and each page's loss on a random share (10-100%) of
#     its visual tokens, half of the pages as one band of rows; its last weights;
# then the SAP window is calibrated (the paper's rule, the 96 pairs of held-out seed 9002) and
# stored beside the weights as sap_calibration.json, the window load_encoder uses by default.
#
#   bash scripts/train_toy_model.sh          # the recipe above -> OUT/model (OUT default out/toy-model)
#   bash scripts/train_toy_model.sh --long   # five phases, 5,240 steps (2 h 20 min when measured)
#
# Copy the checkpoint (OUT/model) to models/sap-rag-toy-colqwen2 once you are happy with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${SAP_RAG_VENV:-.venv}
OUT=${OUT:-out/toy-model}
PY="$VENV/bin/python"
MODE=${1:-}
if [[ $# -gt 1 || ( -n "$MODE" && "$MODE" != "--long" ) ]]; then
  echo "usage: bash scripts/train_toy_model.sh [--long]" >&2
  exit 2
fi
COMMON=(--epochs 100 --vision-width 64 --smooth-max-steps 0 --cover-steps 0 --warmup-steps 20 --no-progress)
if [[ "$MODE" != "--long" ]]; then
  PHASES=(phase1 model)
  "$PY" scripts/train_toy_model.py --out "$OUT/phase1" --epochs 100 --max-steps 1500 --eval-every 250 \
    --threads 2 --vision-width 64 --smooth-max-steps 1200 --same-pages --no-progress
  # One training thread: the other core draws the next epoch's pages meanwhile.
  "$PY" scripts/train_toy_model.py --out "$OUT/model" --init-from "$OUT/phase1" --max-steps 1056 \
    --lr 3e-4 --first-train-seed 1000 --resample 1,2,4 --company-batches 0.5 --token-keep-min 0.1 \
    --token-span-share 0.5 --select last --threads 1 "${COMMON[@]}"
else
  # The longer recipe: the same ingredients one phase at a time (docs/toy-model.md, "What was tried"),
  # as it was run: phases 2-5 on two threads (measured before pages were drawn in the background).
  COMMON+=(--threads 2)
  PHASES=(phase1 phase2 phase3 phase4 model)
  "$PY" scripts/train_toy_model.py --out "$OUT/phase1" --epochs 100 --max-steps 2000 --eval-every 100 \
    --threads 1 --vision-width 64 --smooth-max-steps 1500 --same-pages --no-progress
  "$PY" scripts/train_toy_model.py --out "$OUT/phase2" --init-from "$OUT/phase1" --max-steps 1200 \
    --eval-every 100 --lr 3e-4 "${COMMON[@]}"
  "$PY" scripts/train_toy_model.py --out "$OUT/phase3" --init-from "$OUT/phase2" --max-steps 600 \
    --eval-every 100 --lr 2e-4 --first-train-seed 1000 --resample 1,2,4 "${COMMON[@]}"
  "$PY" scripts/train_toy_model.py --out "$OUT/phase4" --init-from "$OUT/phase3" --max-steps 480 \
    --eval-every 96 --lr 1.5e-4 --first-train-seed 2000 --resample 1,2,4 --company-batches 0.5 "${COMMON[@]}"
  "$PY" scripts/train_toy_model.py --out "$OUT/model" --init-from "$OUT/phase4" --max-steps 960 \
    --eval-every 96 --lr 1.5e-4 --first-train-seed 3000 --resample 1,2,4 --company-batches 0.75 \
    --token-keep-min 0.1 --token-span-share 0.5 --select last "${COMMON[@]}"
fi
# The window: held-out seed 9002's pages and questions (not the curve's seed 9001, not the demo).
"$PY" -c "import sys; from sap_rag.eval.synthetic import make_synthetic_dataset as m; \
m(sys.argv[1], num_pages=96, seed=9002, style='report')" "$OUT/calib-9002"
"$VENV/bin/sap-rag" calibrate --model "$OUT/model" --dataset "$OUT/calib-9002" --device cpu \
  --out "$OUT/model/sap_calibration.json" --plot "$OUT/model-calibration.png"
# One curve for all phases: each phase's steps continue from the step of the weights it started from.
"$PY" - "$OUT" "${PHASES[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
from sap_rag.train.export import plot_curve, write_curve
out, names = Path(sys.argv[1]), sys.argv[2:]
rows, configs, offset = [], {}, 0
for number, name in enumerate(names, start=1):
    run = json.loads((out / name / "training_curve.json").read_text())
    configs[f"phase{number}"] = run["config"]
    rows += [dict(r, phase=number, step=r["step"] + offset) for r in run["curve"]]
    best = max(reversed(run["curve"]), key=lambda r: r["heldout_ndcg5"])  # the weights the next phase starts from
    offset += best["step"]
write_curve(rows, configs, out / "curve")
title = f"toy ColQwen2: {len(names)} phases (each from the weights the last kept)"
plot_curve(rows, out / "curve" / "training_curve.png", title=title)
PYEOF
echo "checkpoint: $OUT/model; curve: $OUT/curve"
