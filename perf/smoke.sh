#!/usr/bin/env bash
# Smoke run of the load generator against chatgroup only: every scenario for a second or
# two, small counts, so the tool never rots. Not a measurement (debug build, no pinning).
# The chat cases register a few users, send with every ack and every delivery checked
# (exactly once, in seq order), fan out, sync 300 missed messages, hold idle synced
# connections, and upload a few 1 MiB files (hash checked by the server); only their
# correctness is asserted, never their speed.
#
#   perf/smoke.sh             debug build (reuses the test stage's artifacts: no compile there)
#   perf/smoke.sh --release   release build
#
# Fails when the server does not start, when the generator reports any error (lost,
# repeated or misordered messages, failed connections, exit status 2) or cannot run, or
# when a run measured nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PROFILE=debug
# The debug build asks for exactly what the test stage (`cargo test --workspace
# --all-features`) resolves: with resolver 2, building test targets turns on the features
# dev-dependencies add (tokio's "full", for one), and a plain `cargo build -p chatgroup` would
# resolve a smaller feature set and recompile tokio, the server and everything between. With
# the same selection the binaries are already fresh after the test stage.
CARGO_FLAGS=(--workspace --all-features --bins --tests)
if [[ "${1:-}" == "--release" ]]; then
    PROFILE=release
    CARGO_FLAGS=(--release -p chatgroup -p chatgroup-loadgen --bin chatgroup --bin loadgen)
fi

cargo build "${CARGO_FLAGS[@]}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
SERVER="$TARGET_DIR/$PROFILE/chatgroup"
LOADGEN="$TARGET_DIR/$PROFILE/loadgen"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/chatgroup-smoke.XXXXXX")"
SPID=""
cleanup() {
    if [[ -n "$SPID" ]]; then
        kill -TERM "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# An ephemeral port, read back from the server's "listening on" log line.
# The chat cases need the per-connection send limit lifted; acks are durable (the default).
"$SERVER" --listen 127.0.0.1:0 --data-dir "$SCRATCH/data" --echo --log info \
    --durability full --message-rate 1000000 --message-burst 1000000 \
    --user-message-rate 1000000 --receipt-rate 1000000 --request-rate 1000000 \
    --max-connections-per-user 1000000 >"$SCRATCH/server.log" 2>&1 &
SPID=$!
ADDR=""
for _ in $(seq 200); do
    ADDR="$(grep -o 'listening on http://[0-9.:]*' "$SCRATCH/server.log" | head -1 | sed 's|.*http://||')" || true
    [[ -n "$ADDR" ]] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.05
done
if [[ -z "$ADDR" ]]; then
    echo "smoke: the server did not start:" >&2
    cat "$SCRATCH/server.log" >&2
    exit 1
fi
echo "smoke: chatgroup (pid $SPID) on $ADDR"

# name | generator arguments | metric that must be positive
CASES=(
    "echo-32b|--warmup 0.2 --duration 1 echo --conns 8 --window 4 --size 32|msgs_per_s"
    "echo-16k|--warmup 0.2 --duration 1 echo --conns 4 --window 4 --size 16384 --text|msgs_per_s"
    "fanout|--warmup 0.2 --duration 1 fanout --subscribers 50 --size 64 --window 8|deliveries_per_s"
    "fanout-rate|--warmup 0.2 --duration 1 fanout --subscribers 20 --size 64 --rate 100|deliveries_per_s"
    "idle|idle --conns 300 --hold 0.5 --rooms 10|conns_alive"
    "storm|storm --conns 300 --concurrency 32|handshakes_per_s"
    "chat-send|--warmup 0.2 --duration 2 chat send --senders 10 --window 4 --size 100|acks_per_s"
    "chat-rate|--warmup 0.2 --duration 1 chat send --senders 5 --groups 5 --rate 200|acks_per_s"
    "chat-fanout|--warmup 0.2 --duration 1 chat fanout --members 20 --users 5 --window 8|deliveries_per_s"
    "chat-receipts|--warmup 0.2 --duration 1 chat fanout --members 20 --users 5 --window 8 --receipts --read --typing|reports_sent"
    "chat-sync|chat sync --messages 300 --window 32 --repeats 2|sync_ms"
    "chat-idle|chat idle --conns 60 --users 6 --group-size 4 --hold 0.5|conns_alive"
    "chat-upload|--duration 0.5 chat upload --clients 2 --file-size 1048576 --files 3|mb_per_s"
)
PASSED=0
FAILED=0
for c in "${CASES[@]}"; do
    IFS='|' read -r name args metric <<<"$c"
    read -r -a argv <<<"$args"
    set +e
    "$LOADGEN" --addr "$ADDR" --server-pid "$SPID" --label chatgroup --tag "$name" --quiet \
        "${argv[@]}" >"$SCRATCH/out.json" 2>"$SCRATCH/err.txt"
    rc=$?
    set -e
    verdict="$(python3 - "$SCRATCH/out.json" "$metric" "$rc" <<'EOF'
import json, sys
path, metric, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    r = json.load(open(path))
except Exception as e:
    print(f"FAIL no report (exit {rc}): {e}")
    sys.exit()
value = r["metrics"].get(metric, 0)
if rc != 0 or r["errors"]:
    print(f"FAIL exit {rc}, {r['errors']} error(s): {'; '.join(r['error_samples'][:3])}")
elif not value > 0:
    print(f"FAIL {metric} = {value}")
else:
    print(f"ok   {metric} = {value:.0f}")
EOF
)"
    printf 'smoke: %-12s %s\n' "$name" "$verdict"
    if [[ "$verdict" == ok* ]]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
        sed 's/^/    /' "$SCRATCH/err.txt" | tail -20 >&2
    fi
done
if ! kill -0 "$SPID" 2>/dev/null; then
    echo "smoke: the server died during the run:" >&2
    tail -20 "$SCRATCH/server.log" >&2
    FAILED=$((FAILED + 1))
fi
echo "smoke: $PASSED passed, $FAILED failed"
((FAILED == 0))
