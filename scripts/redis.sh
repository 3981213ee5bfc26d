#!/usr/bin/env bash
# A scratch Redis server for the multi-node tests, on loopback only.
#
#   bash scripts/redis.sh start   # start (or find running), wait until it answers, print the URL
#   bash scripts/redis.sh url     # print the URL of the running instance
#   bash scripts/redis.sh stop    # stop exactly this instance (the PID in its directory)
#
# Typical use:
#   export CHATGROUP_TEST_REDIS="$(bash scripts/redis.sh start)"
#   cargo test --test e2e cluster
#   bash scripts/redis.sh stop
#
# The instance lives in CHATGROUP_REDIS_DIR (default /tmp/chatgroup-redis): its PID file, its
# log and its port. It listens on 127.0.0.1 on a free port, without persistence (no RDB, no
# AOF: the bus keeps nothing worth saving) and without protected mode surprises, and is
# stopped by its own PID, so a system Redis is never touched.
#
# Needs the server binary: `apt-get install -y redis-server` (or REDIS_SERVER pointing at one).
set -euo pipefail

DIR="${CHATGROUP_REDIS_DIR:-/tmp/chatgroup-redis}"
PORT_FILE="$DIR/port"
PID_FILE="$DIR/redis.pid"
SERVER="${REDIS_SERVER:-$(command -v redis-server || true)}"

if [[ -z "$SERVER" ]]; then
    echo "redis.sh: no redis-server (apt-get install -y redis-server)" >&2
    exit 1
fi

# A TCP port on 127.0.0.1 that nothing listens on: the kernel picks it.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
    local port
    for port in $(seq 56379 56479); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "redis.sh: no free port" >&2
    exit 1
}

url() {
    echo "redis://127.0.0.1:$(cat "$PORT_FILE")/0"
}

running() {
    [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

# Whether the instance answers PING on its port (plain RESP over bash's /dev/tcp, so no
# redis-cli is needed).
answers() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$(cat "$PORT_FILE")" 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 1 reply <&3 || true
    exec 3<&- 3>&-
    [[ "$reply" == +PONG* ]]
}

start() {
    mkdir -p "$DIR"
    if running; then
        url
        return
    fi
    # Reuse the port of the last start (a restart during a test keeps its URL).
    if [[ ! -f "$PORT_FILE" ]]; then
        free_port >"$PORT_FILE"
    fi
    "$SERVER" --bind 127.0.0.1 --port "$(cat "$PORT_FILE")" \
        --daemonize yes --pidfile "$PID_FILE" --logfile "$DIR/redis.log" --dir "$DIR" \
        --save '' --appendonly no --protected-mode yes >/dev/null
    for _ in $(seq 1 100); do
        if running && answers; then
            url
            return
        fi
        sleep 0.1
    done
    echo "redis.sh: redis-server did not start; see $DIR/redis.log" >&2
    exit 1
}

stop() {
    if ! running; then
        return
    fi
    local pid
    pid="$(cat "$PID_FILE")"
    kill "$pid"
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            return
        fi
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *)
        echo "usage: $0 start|stop|url" >&2
        exit 2
        ;;
esac
