#!/usr/bin/env bash
# Every test: unit tests and the end-to-end tests, which build the guests
# for wasm32-wasip2 and drive the real `durable` binary (including SIGKILL).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo test --locked "$@"
