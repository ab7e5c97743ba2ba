#!/usr/bin/env bash
# Builds the Python SDK's wheel (durable_sdk-VERSION-py3-none-any.whl, from
# guest-sdk/python) into OUT_DIR, then checks it: installs it into a fresh
# venv in a temporary directory and runs guest-sdk/python/tests against the
# installed package (a copy of the tests, run from elsewhere, so that the
# source tree is not what they import). Fails if the wheel is broken.
#
#   scripts/sdk-packages/python.sh OUT_DIR
#
# Needs python3 (3.10 or later) with venv, and PyPI (the build backend,
# flit_core, and pytest, at the version pinned in
# guest-sdk/python/requirements.txt). PYTHON overrides the interpreter.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
cd "$(dirname "$0")/../.."
root=$PWD
mkdir -p "$1"
out=$(cd "$1" && pwd)
python=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/durable-sdk-py.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

pytest_pin=$(grep -E '^pytest==' guest-sdk/python/requirements.txt)
"$python" -m venv "$tmp/venv"
pip=("$tmp/venv/bin/python" -m pip --quiet --disable-pip-version-check)

# The wheel, built in an isolated environment (pip fetches flit_core). The
# source is copied first: nothing is written into the tree.
mkdir -p "$tmp/src"
cp -R guest-sdk/python/pyproject.toml guest-sdk/python/README.md guest-sdk/python/durable_sdk "$tmp/src/"
rm -rf "$tmp/src/durable_sdk/__pycache__"
"${pip[@]}" wheel --no-deps --wheel-dir "$tmp/dist" "$tmp/src"
wheels=("$tmp"/dist/durable_sdk-*-py3-none-any.whl)
if [ ${#wheels[@]} -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
    echo "python.sh: expected one wheel, got: ${wheels[*]}" >&2
    exit 1
fi
wheel=${wheels[0]}

# What it must hold.
"$tmp/venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["durable_sdk/__init__.py", "durable_sdk/_host.py", "durable_sdk/http.py", "durable_sdk/testing.py"]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"python.sh: the wheel lacks {', '.join(missing)}")
PY

# Installed into a fresh venv, with pytest; the tests run from a copy, in a
# directory of their own, so they import the installed package.
"${pip[@]}" install --no-deps --no-index "$wheel"
"${pip[@]}" install "$pytest_pin"
mkdir -p "$tmp/check"
cp -R guest-sdk/python/tests "$tmp/check/"
printf '[pytest]\n' >"$tmp/check/pytest.ini" # its own rootdir: no pythonpath from elsewhere
(
    cd "$tmp/check"
    "$tmp/venv/bin/python" -c '
import durable_sdk, durable_sdk.http, durable_sdk.testing, sys
if "site-packages" not in durable_sdk.__file__:
    sys.exit(f"python.sh: durable_sdk came from {durable_sdk.__file__}, not the installed wheel")
'
    PYTHONDONTWRITEBYTECODE=1 "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider tests
)

cp "$wheel" "$out/"
echo "$out/$(basename "$wheel")"
