#!/usr/bin/env bash
# The main job, offline: install, index the sample PDFs with a tiny random-weight model into an
# embedded index, search it, and draw the kept anchors of the best page.
# Outputs go to $OUT (default out/demo). MODEL=vidore/colqwen2-v1.0 runs the same with a real model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
VENV=${SAP_RAG_VENV:-.venv}
OUT=${OUT:-out/demo}
MODEL=${MODEL:-tiny:colqwen2}
QUERY=${QUERY:-"Which region had the highest revenue in 2023?"}
SAP="$VENV/bin/sap-rag"

rm -rf "$OUT/index"
mkdir -p "$OUT"
echo "== sap-rag index examples/data --index $OUT/index --model $MODEL"
"$SAP" index examples/data --index "$OUT/index" --model "$MODEL"
echo
echo "== sap-rag search \"$QUERY\""
"$SAP" search "$QUERY" --index "$OUT/index" -k 3
echo
echo "== sap-rag info"
"$SAP" info --index "$OUT/index"
best=$("$SAP" search "$QUERY" --index "$OUT/index" -k 1 --json \
  | "$VENV/bin/python" -c 'import json, sys; hit = json.load(sys.stdin)[0]; print(hit["doc_id"], hit["page_number"])')
read -r doc page <<<"$best"
echo
echo "== sap-rag show --doc $doc --page $page"
"$SAP" show --index "$OUT/index" --doc "$doc" --page "$page" --out "$OUT/overlay.png"
