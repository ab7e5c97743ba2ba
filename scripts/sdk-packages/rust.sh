#!/usr/bin/env bash
# Packages the Rust SDK (durable-sdk) as crates.io would get it, into $1:
# `cargo package` builds the packaged crate on its own (with its WIT
# inside), so a crate that misses a file fails here.
set -euo pipefail
out="$(realpath -m "${1:?usage: rust.sh OUT_DIR}")"
cd "$(dirname "$0")/../.."
mkdir -p "$out"
cargo package --quiet --locked --allow-dirty -p durable-sdk
target="${CARGO_TARGET_DIR:-$PWD/target}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' guest-sdk/Cargo.toml | head -1)"
cp "$target/package/durable-sdk-$version.crate" "$out/"
echo "$out/durable-sdk-$version.crate"
