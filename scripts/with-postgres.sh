#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server: installs Debian's
# postgresql if its binaries are missing, creates a cluster in a temporary
# directory owned by the non-root `postgres` user, starts it on a free
# loopback port, runs the command with DURABLE_TEST_POSTGRES set to its URL,
# then stops the server and removes the cluster, whatever the command did.
#
#   ./scripts/with-postgres.sh cargo test --lib store::
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing postgresql (Debian packages) for the PostgreSQL tests" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

# PostgreSQL refuses to run as root: the cluster belongs to `postgres` (made
# by the Debian package) when we are root, else to us.
as=()
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /nonexistent --shell /usr/sbin/nologin postgres
    as=(runuser -u postgres --)
fi
dir=$(mktemp -d /tmp/durable-pg.XXXXXX)
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# Run from / : the postgres user may not enter the caller's directory.
pg() { (cd / && "${as[@]}" "$@"); }
stop() {
    pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

pg "$bin/initdb" -D "$dir/data" -U durable --auth=trust -E UTF8 --no-instructions >/dev/null
pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c synchronous_commit=on -c max_connections=200" start >/dev/null
pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U durable durable

export DURABLE_TEST_POSTGRES="postgres://durable@127.0.0.1:$port/durable"
echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (cluster $dir)" >&2
set +e
"$@"
code=$?
set -e
exit $code
