#!/usr/bin/env bash
# The performance comparison of issue 4: chatgroup against tokio-tungstenite, fastwebsockets
# and Node ws, same machine, same run.
#
#   perf/run.sh            full run: every case, 3 rounds (about 15 minutes)
#   perf/run.sh --quick    shorter windows, smaller counts, 1 round (about 3 minutes)
#   perf/run.sh --chat     the chat section only (issue 8): chat cases on chatgroup, plus the raw
#                          broadcast fanout-1000 on chatgroup and tokio-tungstenite to compare
#                          with (about 5 minutes a round; combine with --quick, --rounds)
#
# Options:
#   --rounds N             rounds (default 3; --quick sets 1)
#   --servers "a b"        subset of: chatgroup tungstenite fastws node tcp-echo
#                          (tcp-echo is the raw TCP yardstick: an echo for the echo cases, a
#                          relay of the publisher's bytes for the fanout cases)
#   --cases "x y"          subset of the case names below
#   --no-build             use the binaries already built
#   --wait-quiet SECS      before each round, wait up to SECS for the machine to be idle
#                          (other processes under 0.3 cores), so shared machines skew less
#   --rt                   run server and generator under SCHED_FIFO (chrt -f 20, needs root):
#                          on a machine shared with other work, other processes then only get
#                          the CPU time these two leave (the kernel keeps 5% for them anyway)
#
# The chat cases (chat-*) run on chatgroup only, each against a fresh server with a fresh data
# directory, --durability full and the per-connection rate limit lifted; each registers its
# users first (argon2id, tens of milliseconds a user on the pinned core), which is not measured.
# Environment knobs for them (defaults in brackets; --quick shortens the windows):
#   CHAT_WARMUP [1] CHAT_DURATION [3]      seconds of warm-up and measured window (send, fanout)
#   CHAT_SENDERS [100]                     senders of the chat-send* cases (window 16)
#   CHAT_RATE [10000]                      offered msg/s of the chat-send*-10k cases
#   CHAT_FANOUT_MEMBERS [1000]             member connections of chat-fanout ...
#   CHAT_FANOUT_USERS [100]                ... spread over this many users (1000 = one each)
#   CHAT_SYNC_MESSAGES [10000]             messages chat-sync misses and replays
#   CHAT_IDLE_CONNS [10000] CHAT_IDLE_USERS [100]   connections and users of chat-idle
#   CHAT_UPLOAD_CLIENTS [4] CHAT_UPLOAD_SIZE [16777216]   clients and file size of chat-upload
#   CHAT_UPLOAD_WARM_MB [4096]             before chat-upload, write and delete this much (0: skip;
#                                          see warm_memory below)
#   CHAT_PRESENCE_GROUPS [100] CHAT_PRESENCE_MEMBERS [999] CHAT_PRESENCE_USERS [100]
#   CHAT_PRESENCE_WATCHERS [100]           chat-presence: U in GROUPS groups, each with all
#                                          MEMBERS connections (of USERS users); WATCHERS watch
#
# Each server is started fresh for every case and round, pinned to core 0 (taskset -c 0);
# the generator is pinned to core 1. Rounds are the outer loop, so a slow minute on a shared
# machine hits every server alike rather than one. Every generator run appends one JSON line
# to perf/results/raw-<time>.jsonl; perf/summarize.py turns them into medians, ratios and the
# issue's targets, printed and written to perf/results/latest.md (git-ignored).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CMDLINE="perf/run.sh${*:+ $*}"
QUICK=0
ROUNDS=""
SERVERS="chatgroup tungstenite fastws node tcp-echo"
CASES=""
BUILD=1
WAIT_QUIET=0
RT=0
CHAT_ONLY=0
while (($#)); do
    case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS="$2"; shift ;;
    --servers) SERVERS="$2"; shift ;;
    --cases) CASES="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --wait-quiet) WAIT_QUIET="$2"; shift ;;
    --rt) RT=1 ;;
    --chat) CHAT_ONLY=1 ;;
    -h | --help) sed -n '2,45p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
    esac
    shift
done

if ((QUICK)); then
    ROUNDS="${ROUNDS:-1}"
    TIMING=(--warmup 0.5 --duration 2)
    IDLE_SMALL=5000
    STORM_K=2000
    CHAT_TIMING=(--warmup "${CHAT_WARMUP:-0.5}" --duration "${CHAT_DURATION:-1.5}")
else
    ROUNDS="${ROUNDS:-3}"
    TIMING=(--warmup 1 --duration 5)
    IDLE_SMALL=10000
    STORM_K=5000
    CHAT_TIMING=(--warmup "${CHAT_WARMUP:-1}" --duration "${CHAT_DURATION:-3}")
fi
CHAT_SENDERS="${CHAT_SENDERS:-100}"
CHAT_RATE="${CHAT_RATE:-10000}"
CHAT_FANOUT_MEMBERS="${CHAT_FANOUT_MEMBERS:-1000}"
CHAT_FANOUT_USERS="${CHAT_FANOUT_USERS:-100}"
CHAT_SYNC_MESSAGES="${CHAT_SYNC_MESSAGES:-10000}"
CHAT_IDLE_CONNS="${CHAT_IDLE_CONNS:-10000}"
CHAT_IDLE_USERS="${CHAT_IDLE_USERS:-100}"
CHAT_UPLOAD_CLIENTS="${CHAT_UPLOAD_CLIENTS:-4}"
CHAT_UPLOAD_SIZE="${CHAT_UPLOAD_SIZE:-16777216}"
CHAT_UPLOAD_WARM_MB="${CHAT_UPLOAD_WARM_MB:-4096}"
CHAT_PRESENCE_GROUPS="${CHAT_PRESENCE_GROUPS:-100}"
CHAT_PRESENCE_MEMBERS="${CHAT_PRESENCE_MEMBERS:-999}"
CHAT_PRESENCE_USERS="${CHAT_PRESENCE_USERS:-100}"
CHAT_PRESENCE_WATCHERS="${CHAT_PRESENCE_WATCHERS:-100}"
PRESENCE_ARGS="--groups $CHAT_PRESENCE_GROUPS --members $CHAT_PRESENCE_MEMBERS --users $CHAT_PRESENCE_USERS --watchers $CHAT_PRESENCE_WATCHERS"

# name | generator arguments. The first five mirror issue 4's targets one to one.
ALL_CASES=(
    "echo-32b|echo --conns 100 --window 16 --size 32"
    "echo-16k|echo --conns 100 --window 16 --size 16384"
    "fanout-1000|fanout --subscribers 1000 --size 64 --window 16"
    "fanout-100hz|fanout --subscribers 1000 --size 64 --rate 100"
    "idle-$((IDLE_SMALL / 1000))k|idle --conns $IDLE_SMALL --hold 2"
    "idle-19k|idle --conns 19000 --hold 2"
    "storm-$((STORM_K / 1000))k|storm --conns $STORM_K --concurrency 128"
    # Issue 8's chat figures (chatgroup only). chat-send puts every sender in one group, so
    # each message also goes to the 99 other senders; the -own cases give each sender a
    # group of its own: acked, durable sends with no fan-out. The -10k cases offer a fixed
    # total rate (CHAT_RATE) and time each ack from its scheduled send. chat-fanout's 64-byte
    # bodies match fanout-1000's payloads, the raw broadcast it is compared with.
    "chat-send|chat send --senders $CHAT_SENDERS --window 16 --size 100"
    "chat-send-own|chat send --senders $CHAT_SENDERS --window 16 --size 100 --groups $CHAT_SENDERS"
    "chat-send-10k|chat send --senders $CHAT_SENDERS --window 16 --size 100 --rate $CHAT_RATE"
    "chat-send-own-10k|chat send --senders $CHAT_SENDERS --window 16 --size 100 --groups $CHAT_SENDERS --rate $CHAT_RATE"
    "chat-fanout|chat fanout --members $CHAT_FANOUT_MEMBERS --users $CHAT_FANOUT_USERS --window 16 --size 64"
    # Issue 9 §8: chat-fanout again with every member connection confirming every message it
    # gets with a `received` of its own (-receipts), with one `received` per socket read for
    # the newest message instead (-coalesced, what a client that knows markers are cumulative
    # sends), at most one per connection every 100 ms (-timed, a client confirming on a timer,
    # the hub's own receipt tick), and with `read` too plus the sender's throttled `typing`
    # (-all).
    "chat-fanout-receipts|chat fanout --members $CHAT_FANOUT_MEMBERS --users $CHAT_FANOUT_USERS --window 16 --size 64 --receipts"
    "chat-fanout-coalesced|chat fanout --members $CHAT_FANOUT_MEMBERS --users $CHAT_FANOUT_USERS --window 16 --size 64 --receipts --coalesce"
    "chat-fanout-timed|chat fanout --members $CHAT_FANOUT_MEMBERS --users $CHAT_FANOUT_USERS --window 16 --size 64 --receipts --receipt-every 0.1"
    "chat-fanout-all|chat fanout --members $CHAT_FANOUT_MEMBERS --users $CHAT_FANOUT_USERS --window 16 --size 64 --receipts --read --typing"
    # Issue 9 §3: presence frames per reload, departure and return of one user in
    # CHAT_PRESENCE_GROUPS groups of CHAT_PRESENCE_MEMBERS+1 connected members (server
    # defaults: --presence-fanout 100, --presence-debounce 3s); -push raises
    # --presence-fanout above the group size, so every member connection is told, once.
    "chat-presence|chat presence $PRESENCE_ARGS"
    "chat-presence-push|chat presence $PRESENCE_ARGS"
    "chat-sync|chat sync --messages $CHAT_SYNC_MESSAGES --repeats 5"
    "chat-idle|chat idle --conns $CHAT_IDLE_CONNS --users $CHAT_IDLE_USERS --hold 2"
    # Issue 9 §8: clients each uploading CHAT_UPLOAD_SIZE-byte files in 64 KiB chunks for the
    # measured window, with --durability normal (see below).
    "chat-upload|chat upload --clients $CHAT_UPLOAD_CLIENTS --file-size $CHAT_UPLOAD_SIZE"
)
if ((QUICK)); then
    unset 'ALL_CASES[5]' # 19,000 connections take most of a quick run's time
fi
if ((CHAT_ONLY)); then
    # The chat section: the chat cases, and the raw broadcast they are compared with.
    CASES="${CASES:-fanout-1000 chat-send chat-send-own chat-send-10k chat-send-own-10k chat-fanout chat-fanout-receipts chat-fanout-coalesced chat-fanout-timed chat-fanout-all chat-sync chat-idle chat-presence chat-presence-push chat-upload}"
    if [[ "$SERVERS" == "chatgroup tungstenite fastws node tcp-echo" ]]; then
        SERVERS="chatgroup tungstenite"
    fi
fi
SELECTED=()
for c in "${ALL_CASES[@]}"; do
    name="${c%%|*}"
    if [[ -z "$CASES" || " $CASES " == *" $name "* ]]; then
        SELECTED+=("$c")
    fi
done
if ((${#SELECTED[@]} == 0)); then
    echo "no case matches --cases \"$CASES\"" >&2
    exit 64
fi

# 19,000 connections need 19,000 descriptors on each side of loopback.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 19100)); then
    echo "warning: open-file limit $(ulimit -n) is below 19,100; idle-19k will fail" >&2
fi

if (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c 0)
    PIN_GEN=(taskset -c 1)
else
    echo "warning: fewer than 2 cores: server and generator are not pinned apart" >&2
    PIN_SERVER=()
    PIN_GEN=()
fi
if ((RT)); then
    chrt -f 20 true || { echo "--rt needs chrt and permission for SCHED_FIFO" >&2; exit 1; }
    PIN_SERVER=(chrt -f 20 "${PIN_SERVER[@]}")
    PIN_GEN=(chrt -f 20 "${PIN_GEN[@]}")
fi

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if ((BUILD)); then
    echo "== building chatgroup and loadgen (release)"
    cargo build --release -p chatgroup -p chatgroup-loadgen --bin chatgroup --bin loadgen
    if [[ " $SERVERS " == *" tungstenite "* || " $SERVERS " == *" fastws "* || " $SERVERS " == *" tcp-echo "* ]]; then
        echo "== building the Rust peers (release, own workspace)"
        (cd perf/peers/rust && cargo build --release --target-dir ../target)
    fi
    if [[ " $SERVERS " == *" node "* ]]; then
        echo "== installing the Node peer (ws, bufferutil, utf-8-validate)"
        (cd perf/peers/node && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
mkdir -p perf/results
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="perf/results/raw-$STAMP.jsonl"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/chatgroup-perf.XXXXXX")"
SPID=""

# Measure copies, so a rebuild in the shared target directory cannot swap a binary mid-run.
BIN="$SCRATCH/bin"
mkdir -p "$BIN"
cp "$TARGET_DIR/release/chatgroup" "$TARGET_DIR/release/loadgen" "$BIN/"
for peer in tungstenite-peer fastws-peer tcp-echo-peer; do
    if [[ -x "perf/peers/target/release/$peer" ]]; then cp "perf/peers/target/release/$peer" "$BIN/"; fi
done
LOADGEN="$BIN/loadgen"
PEERS="$BIN"

stop_server() {
    if [[ -n "$SPID" ]]; then
        kill -TERM "$SPID" 2>/dev/null || true
        for _ in $(seq 100); do
            kill -0 "$SPID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
        SPID=""
    fi
    # A fresh data directory per case: deleted once the server is gone.
    [[ "${1:-}" == keep-data ]] || rm -rf "$SCRATCH/data"
}
trap 'stop_server; rm -rf "$SCRATCH"' EXIT

# Flags of chatgroup in the chat cases: durable acks, no per-connection send limit.
CHAT_SERVER_FLAGS=(--durability full --message-rate 1000000 --message-burst 1000000
  --user-message-rate 1000000 --receipt-rate 1000000 --typing-rate 1000000 --request-rate 1000000
  --max-connections-per-user 1000000)

# start_server NAME PORT [EXTRA FLAGS...]: starts it pinned, sets SPID, waits until the port
# accepts. Extra flags go to chatgroup only.
start_server() {
    local name=$1 port=$2 addr="127.0.0.1:$2"
    shift 2
    local log="$SCRATCH/$name.log"
    case "$name" in
    chatgroup)
        [[ -n "${KEEP_DATA:-}" ]] || rm -rf "$SCRATCH/data"
        "${PIN_SERVER[@]}" "$BIN/chatgroup" --listen "$addr" --data-dir "$SCRATCH/data" \
            --echo --log warn "$@" >"$log" 2>&1 &
        ;;
    tungstenite) "${PIN_SERVER[@]}" "$PEERS/tungstenite-peer" "$addr" >"$log" 2>&1 & ;;
    fastws) "${PIN_SERVER[@]}" "$PEERS/fastws-peer" "$addr" >"$log" 2>&1 & ;;
    node) "${PIN_SERVER[@]}" node perf/peers/node/server.js "$addr" >"$log" 2>&1 & ;;
    tcp-echo) "${PIN_SERVER[@]}" "$PEERS/tcp-echo-peer" "$addr" >"$log" 2>&1 & ;;
    *) echo "unknown server $name" >&2; exit 64 ;;
    esac
    SPID=$!
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            sleep 0.2 # let the probe connection go before measuring memory
            return 0
        fi
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.05
    done
    echo "server $name did not start on $addr:" >&2
    cat "$log" >&2
    exit 1
}

# Busy cores over one second, from /proc/stat (everything but idle and iowait).
busy_cores() {
    local a b
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 1
    read -r -a b < <(grep '^cpu ' /proc/stat)
    local busy=0 i
    for i in 1 2 3 6 7 8; do busy=$((busy + b[i] - a[i])); done
    # USER_HZ is 100: ticks per second per core.
    echo "$busy" | awk '{ printf "%.2f", $1 / 100 }'
}

wait_quiet() {
    ((WAIT_QUIET > 0)) || return 0
    local until=$((SECONDS + WAIT_QUIET)) busy
    while :; do
        busy="$(busy_cores)"
        if awk -v b="$busy" 'BEGIN { exit !(b < 0.3) }'; then
            echo "== machine idle ($busy cores busy)"
            return 0
        fi
        if ((SECONDS >= until)); then
            echo "== machine still busy ($busy cores) after ${WAIT_QUIET}s; measuring anyway"
            return 0
        fi
        sleep 5
    done
}

# On a virtual machine, the first write to each page of guest memory costs the hypervisor a
# fault (seen here: 1 GiB into the page cache at 0.6 GB/s the first time, 4.7 GB/s once the
# pages had been used). A long-running server writes files into memory used long since; an
# upload run soon after boot would mostly measure the hypervisor. So before it, write and
# delete CHAT_UPLOAD_WARM_MB MiB: the page cache then reuses those pages.
warm_memory() {
    ((CHAT_UPLOAD_WARM_MB > 0)) || return 0
    dd if=/dev/zero of="$SCRATCH/warm" bs=1M count="$CHAT_UPLOAD_WARM_MB" status=none
    rm -f "$SCRATCH/warm"
}

echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)$( ((RT)) && echo ', SCHED_FIFO')"
echo "== $ROUNDS round(s) x ${#SELECTED[@]} case(s) x servers: $SERVERS; raw results in $RAW"
PORT=$((20000 + RANDOM % 20000))
RUN_START=$SECONDS
FAILED=0
for round in $(seq "$ROUNDS"); do
    wait_quiet
    for server in $SERVERS; do
        for c in "${SELECTED[@]}"; do
            name="${c%%|*}"
            read -r -a args <<<"${c#*|}"
            extra=()
            timing=("${TIMING[@]}")
            if [[ "${args[0]}" == chat ]]; then
                # The chat protocol is chatgroup's own.
                [[ "$server" == chatgroup ]] || continue
                extra=("${CHAT_SERVER_FLAGS[@]}")
                timing=("${CHAT_TIMING[@]}")
                if [[ "$name" == chat-upload ]]; then
                    # Issue 9 asks for --durability normal: a file is written, not fsynced,
                    # before its ack.
                    extra=("${extra[@]/#full/normal}")
                    warm_memory
                fi
                if [[ "$name" == chat-presence-push ]]; then
                    extra+=(--presence-fanout 100000)
                fi
            fi
            if [[ "$server" == tcp-echo ]]; then
                # The yardstick echoes (our masked frames come back) and relays a publisher's
                # bytes unparsed (the publisher then sends unmasked frames); nothing else.
                [[ "${args[0]}" == echo || "${args[0]}" == fanout ]] || continue
                args+=(--raw-peer)
            fi
            PORT=$((PORT + 1))
            start_server "$server" "$PORT" "${extra[@]}"
            printf '   round %d  %-11s %-13s ' "$round" "$server" "$name"
            if [[ "${args[0]} ${args[1]}" == "chat idle" ]]; then
                # Hashing the users' passwords leaves the server's memory inflated, which
                # would swamp a few KiB per connection: a first server process gets the users
                # and groups, a second one on the same data directory holds the connections
                # (the tokens survive the restart).
                if ! "${PIN_GEN[@]}" "$LOADGEN" --addr "127.0.0.1:$PORT" --quiet "${args[@]}" \
                    --prepare "$SCRATCH/accounts.json" >/dev/null 2>"$SCRATCH/err.txt"; then
                    stop_server
                    echo "preparing the users failed"
                    sed 's/^/      /' "$SCRATCH/err.txt" | tail -5
                    FAILED=$((FAILED + 1))
                    continue
                fi
                stop_server keep-data
                PORT=$((PORT + 1))
                KEEP_DATA=1 start_server "$server" "$PORT" "${extra[@]}"
                args+=(--accounts "$SCRATCH/accounts.json")
            fi
            set +e
            "${PIN_GEN[@]}" "$LOADGEN" --addr "127.0.0.1:$PORT" --server-pid "$SPID" \
                --label "$server" --tag "$name" --quiet "${timing[@]}" "${args[@]}" \
                >"$SCRATCH/out.json" 2>"$SCRATCH/err.txt"
            rc=$?
            set -e
            stop_server
            rm -f "$SCRATCH/accounts.json"
            if [[ -s "$SCRATCH/out.json" ]]; then
                cat "$SCRATCH/out.json" >>"$RAW"
                python3 - "$SCRATCH/out.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
keys = ["msgs_per_s", "acks_per_s", "deliveries_per_s", "deliveries_per_server_core_s", "p99_us",
        "sync_ms", "rss_per_conn_bytes", "handshakes_per_s", "reports_sent_per_s",
        "receipt_frames_per_s", "reload_frames", "leave_frames", "watched_reload_frames",
        "watched_leave_frames"]
keys += ["mb_per_s", "mb_per_server_core_s"]
shown = ", ".join(f"{k}={m[k]:.0f}" for k in keys if k in m)
util = " ".join(f"{k[:-9]}={m[k]:.2f}" for k in ["server_cpu_util", "gen_cpu_util", "other_cpu_util"] if k in m)
print(f"{shown}  cores: {util}  errors={r['errors']}")
EOF
            else
                echo "no report (exit $rc)"
            fi
            if ((rc != 0)); then
                FAILED=$((FAILED + 1))
                sed 's/^/      /' "$SCRATCH/err.txt" | tail -5
            fi
        done
    done
done
echo "== done in $((SECONDS - RUN_START)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"

{
    echo "Command: \`$CMDLINE\` at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $STAMP"
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)$( ((RT)) && echo '; server and generator under SCHED_FIFO')"
    echo
    python3 perf/summarize.py "$RAW"
} | tee perf/results/latest.md
if ((FAILED)); then
    echo "warning: $FAILED generator run(s) reported errors; see $RAW" >&2
    exit 1
fi
