#!/usr/bin/env bash
# Install Debian's headless browser for the web page's browser test (tests/test_web_browser.py):
# `chromium` and `chromium-driver` (which provides /usr/bin/chromedriver), from apt.
# Idempotent and quiet: does nothing when both are already installed. Where they cannot be installed
# (no apt, not root, no network) it prints one line and exits 0: the browser test then skips and says why
# (set SAP_RAG_REQUIRE_BROWSER=1 to make that test fail instead, e.g. in CI).
set -uo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
browser() { have chromium || have chromium-browser; }

if browser && have chromedriver; then
  exit 0
fi
if ! have apt-get; then
  echo "[install_browser] no apt-get here: install chromium and chromedriver yourself to run the browser test" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "[install_browser] not root: run 'sudo apt-get install chromium chromium-driver' to run the browser test" >&2
  exit 0
fi

echo "[install_browser] installing chromium and chromium-driver with apt-get" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Lock::Timeout waits for another apt/dpkg (e.g. a second test run) instead of failing at once.
if apt-get -o DPkg::Lock::Timeout=300 update -qq >"$log" 2>&1 &&
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
    chromium chromium-driver >>"$log" 2>&1; then
  exit 0
fi
echo "[install_browser] apt-get failed ($(tail -n 1 "$log")): the browser test will be skipped" >&2
exit 0
