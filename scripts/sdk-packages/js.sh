#!/usr/bin/env bash
# Packs the JavaScript SDK (durable-sdk-VERSION.tgz, from guest-sdk/js) into
# OUT_DIR, then checks it: installs the tarball into a fresh npm project in a
# temporary directory and runs guest-sdk/js/test against the installed
# package (a copy of the tests, which import "durable-sdk" and
# "durable-sdk/testing", run from there, so that the source tree is not what
# they import); and, when this repository's rolldown is installed, bundles a
# workflow from that project as `durable build` does and checks that the
# bundle imports the host's interface (the tarball's host.js), not the Node
# fake. Fails if the tarball is broken.
#
#   scripts/sdk-packages/js.sh OUT_DIR
#
# Needs node (20 or later) and npm; no registry (the package has no
# dependencies).
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
cd "$(dirname "$0")/../.."
root=$PWD
mkdir -p "$1"
out=$(cd "$1" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/durable-sdk-js.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
npm_flags=(--prefer-offline --no-audit --no-fund --loglevel=error)

# The tarball, packed from a copy of the package (what package.json's
# "files" lists, and package.json itself): nothing is written into the tree.
mkdir -p "$tmp/src" "$tmp/dist"
cp -R guest-sdk/js/. "$tmp/src/"
rm -rf "$tmp/src/node_modules"
(cd "$tmp/src" && npm pack --pack-destination "$tmp/dist" "${npm_flags[@]}" >/dev/null)
tarballs=("$tmp"/dist/durable-sdk-*.tgz)
if [ ${#tarballs[@]} -ne 1 ] || [ ! -f "${tarballs[0]}" ]; then
    echo "js.sh: expected one tarball, got: ${tarballs[*]}" >&2
    exit 1
fi
tarball=${tarballs[0]}

# What it must hold.
listing=$(tar -tzf "$tarball")
missing=()
for f in package.json README.md durable.js host.js host-node.js testing.js; do
    grep -qx "package/$f" <<<"$listing" || missing+=("$f")
done
if [ ${#missing[@]} -ne 0 ]; then
    echo "js.sh: the tarball lacks ${missing[*]}" >&2
    exit 1
fi

# Installed into a fresh project (a real folder, not a link); the tests run
# from a copy there.
mkdir -p "$tmp/check"
cat >"$tmp/check/package.json" <<'JSON'
{ "name": "durable-sdk-check", "version": "0.0.0", "private": true, "type": "module" }
JSON
(cd "$tmp/check" && npm install "${npm_flags[@]}" "$tarball" >/dev/null)
cp -R guest-sdk/js/test "$tmp/check/"
(
    cd "$tmp/check"
    if [ -L node_modules/durable-sdk ] || [ ! -f node_modules/durable-sdk/package.json ]; then
        echo "js.sh: node_modules/durable-sdk is not the installed tarball" >&2
        exit 1
    fi
    node --input-type=module -e '
const where = new URL("./node_modules/durable-sdk/", `file://${process.cwd()}/`).href;
for (const name of ["durable-sdk", "durable-sdk/testing"]) {
  const url = import.meta.resolve(name);
  if (!url.startsWith(where)) throw new Error(`js.sh: ${name} resolves to ${url}, not the installed tarball`);
  await import(name);
}
'
    node --test test/
)

# Bundled as `durable build` bundles (rolldown's default conditions): the
# SDK's real host, which imports the interface, and not the Node fake.
rolldown="$root/node_modules/.bin/rolldown"
if [ -x "$rolldown" ]; then
    cat >"$tmp/check/app.js" <<'JS'
import { step, workflow } from "durable-sdk";
export { run, steps } from "durable-sdk";
export const greet = step("greet", (name) => `Hello, ${name}!`);
export const hello = workflow((person) => ({ greeting: greet(person.name) }));
JS
    (cd "$tmp/check" && "$rolldown" app.js --format esm --external 'durable:workflow/durable@0.2.0' \
        -o "$tmp/bundle.js" >/dev/null)
    if ! grep -q '^import .* from "durable:workflow/durable@0.2.0";' "$tmp/bundle.js"; then
        echo "js.sh: the bundle does not import durable:workflow/durable@0.2.0" >&2
        exit 1
    fi
    if grep -q 'durable calls need the durable host' "$tmp/bundle.js"; then
        echo "js.sh: the bundle holds the Node fake's router (host-node.js)" >&2
        exit 1
    fi
else
    echo "js.sh: $rolldown is missing (scripts/setup-guest-tools.sh): the bundle is not checked" >&2
fi

cp "$tarball" "$out/"
echo "$out/$(basename "$tarball")"
