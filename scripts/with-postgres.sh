#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server: installs Debian's
# postgresql if its binaries are missing, creates a cluster in a temporary
# directory owned by the non-root `postgres` user, starts it on a free
# loopback port, runs the command with DURABLE_TEST_POSTGRES set to its URL,
# then stops the server and removes the cluster, whatever the command did.
#
#   ./scripts/with-postgres.sh cargo test -p durable-store --features postgres
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

# TLS: a throwaway CA signs the server's certificate, issued for
# "localhost" only, so that tests can check verify-full (localhost),
# verify-ca (127.0.0.1, a name the certificate lacks) and a wrong CA.
command -v openssl >/dev/null || {
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openssl >/dev/null
}
tls="$dir/tls"
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=durable test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other test CA" \
    -keyout "$tls/other-ca.key" -out "$tls/other-ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$tls/ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
chmod 600 "$tls/server.key"
[ "$(id -u)" = 0 ] && chown -R postgres "$tls"
chmod 755 "$tls"
chmod 644 "$tls/ca.crt" "$tls/other-ca.crt"

pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c synchronous_commit=on -c max_connections=200 -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key -c log_lock_waits=on -c deadlock_timeout=200ms" start >/dev/null
pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U durable durable

export DURABLE_TEST_POSTGRES="postgres://durable@127.0.0.1:$port/durable"
# The server's CA, and one that did not sign it; the server log (the
# deadlock tests read it).
export DURABLE_TEST_POSTGRES_CA="$tls/ca.crt"
export DURABLE_TEST_POSTGRES_OTHER_CA="$tls/other-ca.crt"
export DURABLE_TEST_POSTGRES_LOG="$dir/log"
echo "== PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (cluster $dir)" >&2
set +e
"$@"
code=$?
set -e
exit $code
