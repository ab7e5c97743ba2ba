#!/usr/bin/env bash
# Every test: unit tests and the end-to-end tests, which build the guests
# for wasm32-wasip2 and drive the real `durable` binary (including SIGKILL),
# the UI tests, which drive Debian's headless Chromium, and the store's
# tests on PostgreSQL too.
set -euo pipefail
cd "$(dirname "$0")/.."

# The crates' dependencies point one way and no module imports one that
# imports it back (ARCHITECTURE.md, "Crates"): checked from the sources.
python3 scripts/module-graph.py

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
# The UI tests drive a real headless Chromium.
./scripts/setup-browser.sh
# The Rust SDK's fake host and the examples' own tests (step bodies, and
# workflows against recorded answers) run natively, as an author's do.
cargo test --locked -p durable-sdk -p hello-example -p onboarding -p approval
# The PostgreSQL tests get a throwaway server (installed if missing); the
# SQLite ones alone: cargo test -- --skip postgres
./scripts/with-postgres.sh cargo test --locked "$@"
