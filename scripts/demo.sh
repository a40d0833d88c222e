#!/usr/bin/env bash
# The main job, offline: install, index the sample PDFs with the toy model trained on synthetic report
# pages (models/sap-rag-toy-colqwen2: a toy, not a production model) into an embedded index, ask
# several questions, and draw the kept anchors of the best page.
# Outputs go to $OUT (default out/demo). MODEL=vidore/colqwen2-v1.0 runs the same with a real model;
# QUERY="..." asks one question of your own instead of the sample questions.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
VENV=${SAP_RAG_VENV:-.venv}
OUT=${OUT:-out/demo}
MODEL=${MODEL:-models/sap-rag-toy-colqwen2}
SAP="$VENV/bin/sap-rag"
if [[ -n "${QUERY:-}" ]]; then
  QUESTIONS=("$QUERY")
else
  # Each names a company and a metric: exactly one sample page answers it (see examples/data/make_samples.py).
  QUESTIONS=(
    "What was the revenue of Acme Industries in 2022?"
    "In which year were the emissions of Acme Industries highest?"
    "What was the water use of Borealis Energy in 2021?"
    "How did the profit of Borealis Energy change between 2019 and 2023?"
    "How many customers did Cobalt Health have in 2023?"
    "What was the research spending of Cobalt Health in 2020?"
  )
fi

rm -rf "$OUT/index"
mkdir -p "$OUT"
echo "== sap-rag index examples/data --index $OUT/index --model $MODEL"
"$SAP" index examples/data --index "$OUT/index" --model "$MODEL"
echo
echo "== sap-rag info"
"$SAP" info --index "$OUT/index"
for question in "${QUESTIONS[@]}"; do
  echo
  echo "== sap-rag search \"$question\""
  "$SAP" search "$question" --index "$OUT/index" -k 3
done
best=$("$SAP" search "${QUESTIONS[0]}" --index "$OUT/index" -k 1 --json \
  | "$VENV/bin/python" -c 'import json, sys; hit = json.load(sys.stdin)[0]; print(hit["doc_id"], hit["page_number"])')
read -r doc page <<<"$best"
echo
echo "== sap-rag show --doc $doc --page $page"
"$SAP" show --index "$OUT/index" --doc "$doc" --page "$page" --out "$OUT/overlay.png"
echo
echo "sap-rag is installed in $VENV: run 'source $VENV/bin/activate' to use the sap-rag command from any folder"
echo "(or call $SAP directly); the index is $OUT/index, e.g. sap-rag search \"your question\" --index $OUT/index"
