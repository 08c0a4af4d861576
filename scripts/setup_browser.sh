#!/usr/bin/env bash
# Install Debian's Chromium for the browser test (tests/browser/): the apt packages `chromium` and
# `chromium-driver`. Playwright (pip, in requirements.txt) drives /usr/bin/chromium; no browser is
# downloaded (never run `playwright install`). Needs root (or sudo); quiet unless it fails.
#
#   sudo bash scripts/setup_browser.sh
set -uo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_browser: no apt-get here; install Chromium yourself and set METALIB_CHROMIUM=/path/to/chromium" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup_browser: run as root (or install sudo) to apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
install() { $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >"$log" 2>&1; }
# The package lists may be missing or stale on a fresh machine: update once and retry.
if ! install; then
  $SUDO apt-get update -q >>"$log" 2>&1
  if ! install; then
    echo "setup_browser: apt-get install chromium chromium-driver failed:" >&2
    tail -n 20 "$log" >&2
    rm -f "$log"
    exit 1
  fi
fi
rm -f "$log"
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
