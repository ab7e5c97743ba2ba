#!/usr/bin/env bash
# The onboarding demo: build the host and the onboarding guest, start a run
# that is killed right after its first step commits, then resume it.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
echo "== building the durable host and the onboarding guest (the first build takes a few minutes)"
cargo build --locked --quiet
cargo build --locked --quiet --release --target wasm32-wasip2 -p onboarding

target="${CARGO_TARGET_DIR:-target}"
durable="$target/debug/durable"
wasm="$target/wasm32-wasip2/release/onboarding.wasm"
demo="$target/demo"
rm -rf "$demo" && mkdir -p "$demo"
export DURABLE_DB="$demo/durable.db"
input='{"name":"Ada Lovelace","email":"ada@example.com","team":"engineering"}'

echo
echo "== 1. durable run ... --crash-after create_record#1   (the process is killed like a power cut)"
set +e
"$durable" run "$wasm" --id onboarding-demo --input "$input" --crash-after 'create_record#1'
code=$?
set -e
echo "   (exit status $code: killed by SIGKILL after create_record#1 was committed)"

echo
echo "== 2. durable resume onboarding-demo   (create_record is recovered, the other two run in parallel)"
"$durable" resume onboarding-demo

echo
echo "== 3. durable run ... --id onboarding-demo again   (finished: the stored output, nothing runs)"
"$durable" run "$wasm" --id onboarding-demo --input "$input"

echo
echo "== 4. durable show onboarding-demo --logs   (the step tree: what ran on which drive)"
"$durable" show onboarding-demo --logs
echo
echo "The database is $DURABLE_DB; try: $durable --db $DURABLE_DB list"
