#!/usr/bin/env bash
# The main job, offline: install, then run the quickstart on a tiny random-weight model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
VENV=${SAP_RAG_VENV:-.venv}
"$VENV/bin/python" examples/quickstart.py "$@"
