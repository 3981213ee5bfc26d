#!/usr/bin/env bash
# Profiles one server under one load: perf's software CPU clock sampled with call graphs
# (hardware counters are not available on every machine here), plus system calls and context
# switches counted from kernel tracepoints, divided by the work the generator measured.
#
#   perf/profile.sh [SERVER] [GENERATOR ARGS...]
#   perf/profile.sh chatgroup echo --conns 100 --window 16 --size 32
#   perf/profile.sh tungstenite fanout --subscribers 1000 --size 64
#
# SERVER is chatgroup (default), tungstenite, fastws, node or tcp-echo (give `echo --raw-peer`
# to the generator then). RT=1 runs both under SCHED_FIFO like `perf/run.sh --rt`. Needs `perf` (Debian:
# linux-perf) and the binaries perf/run.sh builds. The report lands in
# perf/results/profile-SERVER.txt; `perf report -i perf/results/profile-SERVER.data` browses it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SERVER="${1:-chatgroup}"
shift || true
if (($# == 0)); then
    set -- echo --conns 100 --window 16 --size 32
fi
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }

mkdir -p perf/results
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/chatgroup-profile.XXXXXX")"
PORT=$((40000 + RANDOM % 20000))
ADDR="127.0.0.1:$PORT"
PEERS=perf/peers/target/release
PIN0=(taskset -c 0)
PIN1=(taskset -c 1)
if [[ "${RT:-0}" == 1 ]]; then
    PIN0=(chrt -f 20 taskset -c 0)
    PIN1=(chrt -f 20 taskset -c 1)
fi
case "$SERVER" in
chatgroup) "${PIN0[@]}" target/release/chatgroup --listen "$ADDR" --data-dir "$SCRATCH/data" --echo --log warn & ;;
tungstenite) "${PIN0[@]}" "$PEERS/tungstenite-peer" "$ADDR" >/dev/null & ;;
fastws) "${PIN0[@]}" "$PEERS/fastws-peer" "$ADDR" >/dev/null & ;;
node) "${PIN0[@]}" node perf/peers/node/server.js "$ADDR" >/dev/null & ;;
tcp-echo) "${PIN0[@]}" "$PEERS/tcp-echo-peer" "$ADDR" >/dev/null & ;;
*) echo "unknown server $SERVER" >&2; exit 64 ;;
esac
SPID=$!
trap 'kill $SPID 2>/dev/null; wait $SPID 2>/dev/null; rm -rf "$SCRATCH"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

WARMUP=1
DURATION=5
# Start recording once the warm-up is over, for the measured window only.
(
    sleep "$WARMUP"
    perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p "$SPID" \
        -o "$SCRATCH/stat.txt" -- sleep "$DURATION" &
    perf record -e cpu-clock -F 2000 -g -p "$SPID" -o "perf/results/profile-$SERVER.data" \
        -- sleep "$DURATION" >/dev/null 2>&1
    wait
) &
REC=$!
"${PIN1[@]}" target/release/loadgen --addr "$ADDR" --server-pid "$SPID" --label "$SERVER" \
    --warmup "$WARMUP" --duration "$DURATION" --quiet "$@" >"$SCRATCH/report.json"
wait $REC

OUT="perf/results/profile-$SERVER.txt"
{
    echo "# $SERVER under: loadgen $*"
    python3 - "$SCRATCH/report.json" "$SCRATCH/stat.txt" <<'EOF'
import json, re, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
work = m.get("messages") or m.get("deliveries") or m.get("handshakes") or 0
stat = open(sys.argv[2]).read()
def count(name):
    hit = re.search(r"([\d,.]+)\s+(?:msec\s+)?" + re.escape(name), stat)
    return float(hit.group(1).replace(",", "")) if hit else None
syscalls, switches, clock = count("raw_syscalls:sys_enter"), count("context-switches"), count("task-clock")
print(f"work units (messages/deliveries/handshakes) in window: {work:.0f}, errors: {r['errors']}")
if work:
    if clock: print(f"server CPU per unit:          {clock * 1000 / work:.3f} µs")
    if syscalls: print(f"server syscalls per unit:     {syscalls / work:.3f}")
    if switches: print(f"server context switches/unit: {switches / work:.4f}")
print("metrics:", {k: round(v, 2) for k, v in sorted(m.items())})
EOF
    echo
    echo "## where the server's CPU goes (self time, by shared object)"
    perf report -i "perf/results/profile-$SERVER.data" --no-children --sort dso -g none 2>/dev/null |
        grep -v '^#' | grep '%' | head -8
    echo
    echo "## top symbols (self time)"
    perf report -i "perf/results/profile-$SERVER.data" --no-children --sort symbol -g none 2>/dev/null |
        grep -v '^#' | grep '%' | head -40
} | tee "$OUT"
