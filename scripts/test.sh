#!/usr/bin/env bash
# Every test: unit tests and the end-to-end tests, which build the guests
# for wasm32-wasip2 and drive the real `durable` binary (including SIGKILL),
# and the UI tests, which drive Debian's headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
# The UI tests drive a real headless Chromium.
./scripts/setup-browser.sh
cargo test --locked "$@"
