#!/usr/bin/env bash
# A scratch PostgreSQL cluster for the store's tests, on loopback only.
#
#   bash scripts/postgres.sh start   # initdb (first time), start, wait until ready, print the URL
#   bash scripts/postgres.sh url     # print the URL of the running cluster
#   bash scripts/postgres.sh stop    # stop exactly this cluster (its data directory)
#
# Typical use:
#   export CHATGROUP_TEST_POSTGRES="$(bash scripts/postgres.sh start)"
#   cargo test -p chatgroup-store
#   bash scripts/postgres.sh stop
#
# The cluster lives in CHATGROUP_PG_DIR (default /tmp/chatgroup-pg): its data, its log and its
# unix socket, so it never touches a system cluster. It listens on 127.0.0.1 on a free port
# with trust authentication (a test database on loopback, nothing to protect), and runs with
# fsync off: the tests check the store's logic, not the disk's. initdb refuses to run as
# root, so as root the cluster belongs to the `postgres` OS user (created by the Debian
# package); otherwise it belongs to whoever runs this.
#
# Needs the server binaries: `apt-get install -y postgresql` (Debian 12: PostgreSQL 15, in
# /usr/lib/postgresql/15/bin), or PG_BIN pointing at another bin directory.
set -euo pipefail

DIR="${CHATGROUP_PG_DIR:-/tmp/chatgroup-pg}"
DATA="$DIR/data"
PORT_FILE="$DIR/port"

find_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        echo "$PG_BIN"
        return
    fi
    local candidate
    for candidate in /usr/lib/postgresql/*/bin; do
        if [[ -x "$candidate/initdb" ]]; then
            echo "$candidate"
            return
        fi
    done
    if command -v initdb >/dev/null; then
        dirname "$(command -v initdb)"
        return
    fi
    echo "postgres.sh: no PostgreSQL server binaries (apt-get install -y postgresql)" >&2
    exit 1
}

BIN="$(find_bin)"

# Runs a server binary as the cluster's owner.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# A TCP port on 127.0.0.1 that nothing listens on: the kernel picks it.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
    local port
    for port in $(seq 55432 55532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "postgres.sh: no free port" >&2
    exit 1
}

url() {
    echo "postgres://postgres@127.0.0.1:$(cat "$PORT_FILE")/postgres"
}

running() {
    [[ -f "$DATA/postmaster.pid" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    mkdir -p "$DIR"
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "$DIR"
    fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync \
            --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || {
            cat "$DIR/initdb.log" >&2
            exit 1
        }
    fi
    if running; then
        url
        return
    fi
    local port
    port="$(free_port)"
    echo "$port" >"$PORT_FILE"
    # -w: pg_ctl returns once the server accepts connections (or fails).
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 start -o \
        "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        >/dev/null || {
        tail -n 30 "$DIR/server.log" >&2
        exit 1
    }
    # pg_ctl -w already waited; make sure TCP on loopback answers too.
    for _ in $(seq 1 100); do
        if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            url
            return
        fi
        sleep 0.1
    done
    echo "postgres.sh: the server did not become ready; see $DIR/server.log" >&2
    exit 1
}

stop() {
    if running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
url)
    running || {
        echo "postgres.sh: not running" >&2
        exit 1
    }
    url
    ;;
*)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
