#!/usr/bin/env bash
# One command from a fresh clone: install (skipped when already current), then run the web
# app and one local CPU node. Arguments are `edgesight serve` flags, e.g.
#   scripts/serve.sh --port 8080 --node-port 8081      (scripts/serve.sh --help lists them)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/edgesight serve "$@"
