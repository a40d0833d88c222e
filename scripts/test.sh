#!/usr/bin/env bash
# Install what is needed (the venv; Debian's chromium where apt allows), lint, and run the whole test
# suite (offline, CPU, a few minutes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
VENV=${SAP_RAG_VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
# Debian's chromium for the web page's browser test; where apt or root is missing it says so in
# one line and the test skips with that reason (never a failure here).
bash scripts/install_browser.sh || echo "[test] scripts/install_browser.sh failed; the browser test will skip" >&2
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
