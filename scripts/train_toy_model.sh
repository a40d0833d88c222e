#!/usr/bin/env bash
# The recipe of models/sap-rag-toy-colqwen2, in four phases (see docs/toy-model.md):
#  1. from scratch, 2,000 steps on 8 fixed corpora (1,280 pages seen again and again): the model
#     learns to read titles (it also learns those pages by heart: train loss ~0.01);
#  2. from phase 1's best weights, 1,200 steps on new pages every epoch (no page seen twice), hard
#     max, lower learning rate: what it learned by heart must now generalise;
#  3. from phase 2's best, 600 steps on new pages drawn at 1, 2 or 4x and shrunk to the page size,
#     as a PDF page reaches the model through a rasteriser and the image processor's resize;
#  4. from phase 3's best, 480 steps as phase 3 with half the batches cut company by company, so
#     each question meets its company's other metrics as negatives;
#  5. from phase 4's best, 960 steps as phase 4 (3 in 4 corpora cut by company) where each page's
#     loss sees a random share (10-100%) of its visual tokens, half of the pages as one band of
#     rows: what names the page must not live in a few tokens a pruner may drop; its last weights;
# then the SAP window is calibrated (the paper's rule, 96 pairs of held-out seed 9002) and stored
# beside the weights as sap_calibration.json, the window load_encoder uses by default.
# About 2 hours 20 minutes on 2 CPU cores. Writes OUT (default out/toy-model) and its curve; copy
# the checkpoint (OUT/model) to models/sap-rag-toy-colqwen2 once you are happy with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${SAP_RAG_VENV:-.venv}
OUT=${OUT:-out/toy-model}
PY="$VENV/bin/python"
COMMON=(--epochs 100 --threads 2 --vision-width 64 --smooth-max-steps 0 --cover-steps 0 --warmup-steps 20 --no-progress)
if [[ "${1:-}" == "--quick" ]]; then
  # The one-hour recipe (docs/toy-model.md, "Quick recipe"): phase 1 shortened, then one phase with
  # everything phases 2-5 add (new pages, shrunk drawings, company batches, token dropout).
  "$PY" scripts/train_toy_model.py --out "$OUT/quick1" --epochs 100 --max-steps 1500 --eval-every 250 \
    --threads 2 --vision-width 64 --smooth-max-steps 1200 --same-pages --no-progress
  "$PY" scripts/train_toy_model.py --out "$OUT/quick" --init-from "$OUT/quick1" --max-steps 900 --eval-every 150 \
    --lr 3e-4 --first-train-seed 1000 --resample 1,2,4 --company-batches 0.5 --token-keep-min 0.1 \
    --token-span-share 0.5 --select last "${COMMON[@]}"
  echo "checkpoint: $OUT/quick (calibrate it as below before use)"
  exit 0
fi
"$PY" scripts/train_toy_model.py --out "$OUT/phase1" --epochs 100 --max-steps 2000 --eval-every 100 \
  --threads 1 --vision-width 64 --smooth-max-steps 1500 --same-pages --no-progress
"$PY" scripts/train_toy_model.py --out "$OUT/phase2" --init-from "$OUT/phase1" --max-steps 1200 --eval-every 100 \
  --lr 3e-4 "${COMMON[@]}"
"$PY" scripts/train_toy_model.py --out "$OUT/phase3" --init-from "$OUT/phase2" --max-steps 600 --eval-every 100 \
  --lr 2e-4 --first-train-seed 1000 --resample 1,2,4 "${COMMON[@]}"
"$PY" scripts/train_toy_model.py --out "$OUT/phase4" --init-from "$OUT/phase3" --max-steps 480 --eval-every 96 \
  --lr 1.5e-4 --first-train-seed 2000 --resample 1,2,4 --company-batches 0.5 "${COMMON[@]}"
"$PY" scripts/train_toy_model.py --out "$OUT/model" --init-from "$OUT/phase4" --max-steps 960 --eval-every 96 \
  --lr 1.5e-4 --first-train-seed 3000 --resample 1,2,4 --company-batches 0.75 --token-keep-min 0.1 \
  --token-span-share 0.5 --select last "${COMMON[@]}"
# The window: calibration pairs from held-out seed 9002 (not the curve's seed 9001, not the demo).
"$PY" - "$OUT/calib-9002" <<'PYEOF'
import json, sys
from pathlib import Path
from sap_rag.eval.synthetic import make_synthetic_dataset
root = make_synthetic_dataset(sys.argv[1], num_pages=96, seed=9002, style="report")
rows = lambda name: [json.loads(line) for line in (root / name).read_text().splitlines()]
image = {r["corpus-id"]: r["image"] for r in rows("corpus.jsonl")}
page = {r["query-id"]: r["corpus-id"] for r in rows("qrels.jsonl")}
lines = [json.dumps({"query": q["query"], "image": image[page[q["query-id"]]]}) for q in rows("queries.jsonl")]
(root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
PYEOF
"$VENV/bin/sap-rag" calibrate --model "$OUT/model" --pairs "$OUT/calib-9002/pairs.jsonl" --device cpu \
  --out "$OUT/model/sap_calibration.json" --plot "$OUT/model-calibration.png"
# One curve for all phases: each phase's steps continue from the step of the weights it started from.
"$PY" - "$OUT" phase1 phase2 phase3 phase4 model <<'PYEOF'
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
plot_curve(rows, out / "curve" / "training_curve.png", title="toy ColQwen2: phases 1-5 (each from the weights the last kept)")
PYEOF
echo "checkpoint: $OUT/model; curve: $OUT/curve"
