#!/usr/bin/env bash
# Create .venv (if missing) and install sap-rag, its integrations and dev tools into it.
# Idempotent: re-installs only when a pyproject.toml changed. torch is pinned to 2.13.0 first so
# that nothing pulls a multi-GB CUDA build (colpali-engine accepts torch<2.14).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${SAP_RAG_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
stamp="$VENV/.sap-rag-installed"
shopt -s nullglob
want=$(cat pyproject.toml integrations/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "[bootstrap] installing into $VENV (first run takes a few minutes)" >&2
  "${PIP[@]}" torch==2.13.0
  targets=(-e ".[dev]")
  for dist in integrations/*/; do
    [ -f "$dist/pyproject.toml" ] && targets+=(-e "$dist")
  done
  "${PIP[@]}" "${targets[@]}"
  echo "$want" > "$stamp"
fi
