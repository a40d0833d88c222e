#!/usr/bin/env bash
# Install what is needed, lint, and run the whole test suite (offline, CPU, a few minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
VENV=${SAP_RAG_VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  # pytest's "no tests collected": a selection (-k/-m) that matched nothing is not a failure.
  echo "pytest collected no tests for this selection"
  rc=0
fi
exit "$rc"
