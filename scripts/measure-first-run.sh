#!/usr/bin/env bash
# Measures the time from an empty folder to a first run, per language, with
# the build tools already installed (scripts/setup-guest-tools.sh: cargo and
# the wasm32-wasip2 target, componentize-py in .venv, npm's cache):
#   durable new hello --lang L && durable build && durable run DIR
# in a fresh scratch folder, with an empty compile cache and, for Rust, an
# empty target folder (the SDK's dependencies compile once per project).
#   scripts/measure-first-run.sh [DURABLE]   (default: the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
durable="$(realpath "${1:-${CARGO_TARGET_DIR:-$root/target}/release/durable}")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export PATH="$root/.venv/bin:$PATH" DURABLE_CACHE_DIR="$scratch/cache"
unset CARGO_TARGET_DIR
for lang in rust python js; do
    cd "$scratch"
    start=$(date +%s.%N)
    "$durable" new "first-$lang" --lang "$lang" 2>/dev/null
    if [ "$lang" = js ]; then
        (cd "first-$lang" && npm install --prefer-offline --no-audit --no-fund --silent)
    fi
    built=$(date +%s.%N)
    "$durable" build "first-$lang" >/dev/null 2>"$scratch/build-$lang.log"
    ran=$(date +%s.%N)
    out=$("$durable" --db "$scratch/$lang.db" run "first-$lang" --input '{"name":"Ada"}' 2>/dev/null)
    end=$(date +%s.%N)
    size=$(stat -c %s "first-$lang/build/first-$lang.wasm")
    printf '%-7s new+install %6.1f s  build %6.1f s  first run %5.1f s  total %6.1f s  component %6d KB  %s\n' \
        "$lang" "$(awk "BEGIN{print $built - $start}")" "$(awk "BEGIN{print $ran - $built}")" \
        "$(awk "BEGIN{print $end - $ran}")" "$(awk "BEGIN{print $end - $start}")" "$((size / 1024))" "$out"
done
