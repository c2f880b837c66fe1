#!/usr/bin/env bash
# Installs edgesight into ./.venv (Python packages) and ./node_modules (Pyodide and
# onnxruntime-web from npm). Idempotent. EXTRAS selects pip extras, e.g. EXTRAS=test or gpu.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "edgesight needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "edgesight needs Node.js and npm (apt-get install nodejs npm)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
.venv/bin/python -m pip install --quiet -e "$spec"
# npm ci installs exactly package-lock.json; no install scripts are needed by the runtimes.
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
