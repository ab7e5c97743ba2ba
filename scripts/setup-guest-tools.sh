#!/usr/bin/env bash
# Installs the tools that build Python and JavaScript guests, into the
# project: componentize-py into ./.venv, componentize-js and rolldown into
# ./node_modules (versions pinned in guest-sdk/python/requirements.txt and
# package-lock.json). Quick when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r guest-sdk/python/requirements.txt
fi
if [ ! -x node_modules/.bin/componentize-js ] || [ ! -x node_modules/.bin/rolldown ] \
    || [ ! -d node_modules/@bytecodealliance/preview2-shim ]; then
    npm ci --silent --no-audit --no-fund
fi
