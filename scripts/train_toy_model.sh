#!/usr/bin/env bash
# The recipe of models/sap-rag-toy-colqwen2, in two phases (see docs/toy-model.md):
#  1. from scratch, 2,000 steps on 8 fixed corpora (1,280 pages seen again and again): the model
#     learns to read titles (it also learns those pages by heart: train loss ~0.01);
#  2. from phase 1's best weights, 1,200 steps on new pages every epoch (no page seen twice), hard
#     max, lower learning rate: what it learned by heart must now generalise.
# About 75 minutes on 2 CPU cores. Writes OUT (default out/toy-model) and its curve; copy the
# checkpoint to models/sap-rag-toy-colqwen2 once you are happy with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${SAP_RAG_VENV:-.venv}
OUT=${OUT:-out/toy-model}
PY="$VENV/bin/python"
"$PY" scripts/train_toy_model.py --out "$OUT/phase1" --epochs 100 --max-steps 2000 --eval-every 100 \
  --threads 1 --vision-width 64 --smooth-max-steps 1500 --same-pages --no-progress
"$PY" scripts/train_toy_model.py --out "$OUT/model" --init-from "$OUT/phase1" --epochs 100 --max-steps 1200 \
  --eval-every 100 --threads 2 --vision-width 64 --smooth-max-steps 0 --cover-steps 0 --lr 3e-4 \
  --warmup-steps 20 --no-progress
# One curve for both phases (phase 2's steps continue phase 1's), its picture next to it.
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
from sap_rag.train.export import plot_curve, write_curve
out = Path(sys.argv[1])
one = json.loads((out / "phase1" / "training_curve.json").read_text())
two = json.loads((out / "model" / "training_curve.json").read_text())
offset = one["curve"][-1]["step"]
rows = [dict(r, phase=1) for r in one["curve"]] + [dict(r, phase=2, step=r["step"] + offset) for r in two["curve"]]
write_curve(rows, {"phase1": one["config"], "phase2": two["config"]}, out / "curve")
plot_curve(rows, out / "curve" / "training_curve.png", title=f"toy ColQwen2: phase 1 (steps 0-{offset}), phase 2")
EOF
echo "checkpoint: $OUT/model; curve: $OUT/curve"
