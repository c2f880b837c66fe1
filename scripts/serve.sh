#!/usr/bin/env bash
# One command from a fresh clone: install, then run the web app and one local CPU node.
# Arguments go to `edgesight serve` (e.g. --port 8080 --node-port 8081).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/edgesight serve "$@"
