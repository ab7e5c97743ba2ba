#!/usr/bin/env bash
# Builds every example guest, in every language, into $GUESTS_DIR
# (default: target/guests): onboarding.wasm (Rust), onboarding-py.wasm
# (Python), onboarding-js.wasm (JavaScript), and for the tests each one's
# "-changed" variant (grant_access renamed, to provoke a divergence) and
# testbed-py.wasm / testbed-js.wasm (the Python and JS SDKs' edge cases);
# approval.wasm, approval-py.wasm and approval-js.wasm (timers and events);
# order.wasm, order-py.wasm and order-js.wasm with payment.wasm (child
# workflows, races: `durable run order.wasm --link payment=payment.wasm`);
# onboarding-cc.wasm, the Rust example built with `cargo component`;
# hello-py.wasm (the Python template of `durable new`).
# Needs the tools of scripts/setup-guest-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target="${CARGO_TARGET_DIR:-$root/target}"
out="${GUESTS_DIR:-$target/guests}"
mkdir -p "$out"
work="$out/.work"
rm -rf "$work" && mkdir -p "$work"

for tool in .venv/bin/componentize-py node_modules/.bin/componentize-js node_modules/.bin/rolldown; do
    if [ ! -x "$tool" ]; then
        echo "build-guests: $tool is missing; run scripts/setup-guest-tools.sh first" >&2
        exit 2
    fi
done

# Rust with cargo-component (wasm32-wasip1 and the adapter), as many Rust
# users build: the same onboarding example, in its own target dir.
cargo component build --quiet --locked --release -p onboarding --target-dir "$target/guests-cc"
cp "$target/guests-cc/wasm32-wasip1/release/onboarding.wasm" "$out/onboarding-cc.wasm"

# Rust: the normal build, and the changed variant in its own target dir.
cargo build --quiet --locked --release --target wasm32-wasip2 -p onboarding -p approval -p order -p payment
for name in onboarding approval order payment; do
    cp "$target/wasm32-wasip2/release/$name.wasm" "$out/$name.wasm"
done
# The changed variant is a copy with grant_access renamed (as the Python and
# JS ones below), built as a project of its own with the workspace's lock.
changed="$work/onboarding-changed"
mkdir -p "$changed/src"
sed 's/grant_access/grant_access_v2/g' guest-examples/onboarding/src/lib.rs >"$changed/src/lib.rs"
cat >"$changed/Cargo.toml" <<TOML
[package]
name = "onboarding"
version = "0.1.0"
edition = "2024"
[lib]
crate-type = ["cdylib"]
[dependencies]
durable-sdk = { path = "$root/guest-sdk" }
serde = { version = "1", features = ["derive"] }
[dev-dependencies]
serde_json = "1"
[workspace]
[profile.release]
debug = false
TOML
cp Cargo.lock "$changed/"
cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$changed/Cargo.toml" \
    --target-dir "$target/guests-changed"
cp "$target/guests-changed/wasm32-wasip2/release/onboarding.wasm" "$out/onboarding-changed.wasm"

# Python: componentize-py bundles CPython, the SDK (the durable_sdk package)
# and the app (its modules, not its tests). It builds from copies, because it
# writes __pycache__ next to the sources it reads.
python_guest() { # SOURCE_DIR OUTPUT
    local src="$work/py-src" f
    rm -rf "$src" && mkdir -p "$src/app" "$src/sdk"
    for f in "$1"/*.py; do
        case "${f##*/}" in test_*.py | *_test.py | conftest.py) ;; *) cp "$f" "$src/app/" ;; esac
    done
    cp -R "$root/guest-sdk/python/durable_sdk" "$src/sdk/"
    rm -rf "$src/sdk/durable_sdk/__pycache__"
    "$root/.venv/bin/componentize-py" -d "$root/wit" -w workflow componentize app \
        -p "$src/app" -p "$src/sdk" -o "$2" >/dev/null
}
python_guest guest-examples/hello-py "$out/hello-py.wasm"
python_guest guest-examples/onboarding-py "$out/onboarding-py.wasm"
mkdir -p "$work/py-changed"
sed 's/^def grant_access(/def grant_access_v2(/; s/grant_access\.using/grant_access_v2.using/' \
    guest-examples/onboarding-py/app.py >"$work/py-changed/app.py"
python_guest "$work/py-changed" "$out/onboarding-py-changed.wasm"
python_guest tests/guests/testbed-py "$out/testbed-py.wasm"
python_guest guest-examples/approval-py "$out/approval-py.wasm"
python_guest guest-examples/order-py "$out/order-py.wasm"

# JavaScript: bundle app + SDK into one module, then componentize-js (run
# where the WIT folder is inside the current directory, as it requires). The
# apps import "durable-sdk" as any author's do (node_modules/durable-sdk, a
# link to guest-sdk/js); rolldown's default conditions (browser, import,
# default: not "node") give the SDK its real host, guest-sdk/js/host.js,
# which imports the interface below, instead of the Node fake's router. The
# bundle is a real file: componentize-js refuses a path through a symlink.
js_guest() { # APP_JS OUTPUT
    "$root/node_modules/.bin/rolldown" "$1" --format esm \
        --external 'durable:workflow/durable@0.2.0' -o "$work/bundle.js" >/dev/null
    if ! grep -q '^import .* from "durable:workflow/durable@0.2.0";' "$work/bundle.js"; then
        echo "build-guests: the bundle of $1 does not import durable:workflow/durable@0.2.0" >&2
        exit 1
    fi
    (cd "$root" && node_modules/.bin/componentize-js "$work/bundle.js" --wit wit --world-name workflow \
        -d fetch-event -o "$2" >/dev/null)
}
js_guest guest-examples/hello-js/app.js "$out/hello-js.wasm"
js_guest guest-examples/onboarding-js/app.js "$out/onboarding-js.wasm"
# The changed variant: a copy with grant_access renamed. It lives under
# node_modules (ignored by git, as .cache folders of other tools there), so
# that "durable-sdk" resolves from it as from the example's folder; written
# aside and moved, so that a build running at the same time never reads half.
js_changed="$root/node_modules/.cache/durable-build-guests/onboarding-js-changed.js"
mkdir -p "${js_changed%/*}"
sed 's/step("grant_access"/step("grant_access_v2"/' guest-examples/onboarding-js/app.js >"$js_changed.$$"
grep -q 'step("grant_access_v2"' "$js_changed.$$" || { echo "build-guests: onboarding-js has no grant_access step to rename" >&2; exit 1; }
mv -f "$js_changed.$$" "$js_changed"
js_guest "$js_changed" "$out/onboarding-js-changed.wasm"
js_guest tests/guests/testbed-js/app.js "$out/testbed-js.wasm"
js_guest guest-examples/approval-js/app.js "$out/approval-js.wasm"
js_guest guest-examples/order-js/app.js "$out/order-js.wasm"

rm -rf "$work"
ls -1 "$out"/*.wasm
