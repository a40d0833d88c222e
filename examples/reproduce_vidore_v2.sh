#!/usr/bin/env bash
# Reproduce the SAP paper's ViDoRe v2 comparison for ColPali v1.2 and ColQwen2 v1.0.
#
# Needs: network (Hugging Face Hub) and a CUDA GPU; sap-rag installed with pyarrow
# (pip install -e '.[eval]' or pip install pyarrow). About 3,000 pages are encoded once per
# model (cached under $OUT/<model>/cache); every pruner and keep ratio then runs on the cache.
#
#   bash examples/reproduce_vidore_v2.sh            # everything
#   DATA=/big/disk/vidore_v2 OUT=out bash examples/reproduce_vidore_v2.sh
#
# Results: $OUT/<model>/results.md (NDCG@5 retention tables), results.csv, retention.png.
set -euo pipefail

DATA=${DATA:-data/vidore_v2}
OUT=${OUT:-out/vidore_v2}
PYTHON=${PYTHON:-python}
SUBSETS=(esg_reports_v2 biomedical_lectures_v2 economics_reports_v2)
MODELS=(vidore/colpali-v1.2 vidore/colqwen2-v1.0)

# 1. Download the ViDoRe v2 subsets (corpus / queries / qrels parquet shards).
#    `hf` comes with huggingface_hub >= 1.0; older versions: `huggingface-cli download` (same flags).
for subset in "${SUBSETS[@]}"; do
    if [ ! -d "$DATA/$subset/corpus" ]; then
        hf download "vidore/$subset" --repo-type dataset --local-dir "$DATA/$subset"
    fi
done

# 2. Evaluate every pruner at 20%, 10% and 5% of the visual tokens, per subset, averaged
#    ("mean" rows) and on the union of the subsets ("union" rows). `python -m sap_rag.eval`
#    is the same command as `sap-rag eval`.
for model in "${MODELS[@]}"; do
    "$PYTHON" -m sap_rag.eval \
        --dataset "$DATA" \
        --model "$model" \
        --pruners all \
        --keep-ratios 0.2,0.1,0.05 \
        --union \
        --batch-size 8 \
        --search-device cuda \
        --out "$OUT/${model#*/}"
done
