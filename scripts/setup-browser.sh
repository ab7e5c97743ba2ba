#!/usr/bin/env bash
# Installs what the UI tests (tests/e2e/ui.rs) drive: Debian's headless
# Chromium and its chromedriver. Nothing is downloaded but Debian packages;
# already installed, it does nothing.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        sudo="sudo"
    else
        echo "setup-browser: chromium and chromium-driver are missing and this is not root;" >&2
        echo "  install them as root: apt-get install -y chromium chromium-driver" >&2
        exit 1
    fi
fi
echo "== installing chromium and chromium-driver (Debian packages) for the UI tests"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
/usr/bin/chromium --version
