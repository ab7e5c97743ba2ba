#!/usr/bin/env bash
# Installs the tools that build Python and JavaScript guests, into the
# project: componentize-py and pytest into ./.venv, componentize-js and rolldown into
# ./node_modules (versions pinned in guest-sdk/python/requirements.txt and
# package-lock.json); and cargo-component (pinned below) into ~/.cargo/bin.
# Quick when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# cargo-component, the other way Rust users build components (from
# wasm32-wasip1 and an adapter): pinned, built from crates.io into
# ~/.cargo/bin the first time (about 5 minutes on 2 cores).
CARGO_COMPONENT_VERSION=0.21.1
rustup target add wasm32-wasip1 >/dev/null 2>&1 || rustup target add wasm32-wasip1
if [ "$(cargo component --version 2>/dev/null)" != "cargo-component-component $CARGO_COMPONENT_VERSION" ]; then
    echo "setup-guest-tools: installing cargo-component $CARGO_COMPONENT_VERSION (first time only)" >&2
    env -u CARGO_TARGET_DIR cargo install --quiet --locked cargo-component --version "$CARGO_COMPONENT_VERSION"
fi

# componentize-py builds Python guests; pytest runs their tests (and the
# SDK's) against durable_sdk.testing.
if [ ! -x .venv/bin/componentize-py ] || ! .venv/bin/python -c 'import pytest' 2>/dev/null; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r guest-sdk/python/requirements.txt
fi
# node_modules/durable-sdk links guest-sdk/js (the JS examples import it as
# "durable-sdk"): a tree installed before it was listed lacks it.
if [ ! -x node_modules/.bin/componentize-js ] || [ ! -x node_modules/.bin/rolldown ] \
    || [ ! -d node_modules/@bytecodealliance/preview2-shim ] || [ ! -e node_modules/durable-sdk/package.json ]; then
    npm ci --silent --no-audit --no-fund
fi
