#!/usr/bin/env bash
# Installs edgesight into ./.venv (Python packages) and ./node_modules (Pyodide and
# onnxruntime-web from npm; puppeteer-core, a devDependency, drives Firefox in the tests). Idempotent, and quick when nothing changed: each step is
# skipped while the hash of what it installs from (pyproject.toml and EXTRAS, or
# package-lock.json) matches the one stored after its last success. EXTRAS selects pip
# extras, e.g. EXTRAS=test or gpu. The installers' output goes to a log, shown on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "edgesight needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "edgesight needs Node.js and npm (apt-get install nodejs npm)" >&2; exit 1; }

digest() { sha256sum "$@" | sha256sum | cut -c1-64; }

# quietly LOG CMD...: run CMD with its output in LOG; print LOG and fail if it fails.
quietly() {
  local log=$1; shift
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "install: '$*' failed (output above, kept in $log)" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  quietly .venv/pip.log .venv/bin/python -m pip install --upgrade pip
fi
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
python_stamp="$(digest pyproject.toml) ${EXTRAS:-}"
if [ "$(cat .venv/.edgesight-installed 2>/dev/null)" != "$python_stamp" ]; then
  echo "installing Python packages into .venv${EXTRAS:+ (extras: $EXTRAS)}…"
  quietly .venv/pip.log .venv/bin/python -m pip install --quiet -e "$spec"
  echo "$python_stamp" > .venv/.edgesight-installed
fi

npm_stamp="$(digest package-lock.json)"
if [ "$(cat node_modules/.edgesight-installed 2>/dev/null)" != "$npm_stamp" ]; then
  echo "installing Pyodide and onnxruntime-web into node_modules…"
  # npm ci installs exactly package-lock.json; no install scripts are needed by the runtimes.
  quietly /tmp/edgesight-npm.log npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
  echo "$npm_stamp" > node_modules/.edgesight-installed
fi
