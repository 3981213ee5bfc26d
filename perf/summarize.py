#!/usr/bin/env python3
"""Turns loadgen's JSON lines into the comparison tables of issue 4, and the chat figures of
issue 8 (chatgroup only; its fan-out compared with tokio-tungstenite's raw broadcast).

    python3 perf/summarize.py perf/results/raw-*.jsonl

Medians over rounds per (case, server); ratios are chatgroup relative to each peer, written
so that above 1 always means chatgroup is better (higher rate, or lower latency and memory).
Output is Markdown, ready for the README's Performance section.
"""

import json
import statistics
import sys
from collections import defaultdict

OURS = "chatgroup"
SERVER_ORDER = [OURS, "tungstenite", "fastws", "node", "tcp-echo"]
SERVER_NAMES = {
    OURS: "chatgroup",
    "tungstenite": "tokio-tungstenite",
    "fastws": "fastwebsockets",
    "node": "Node ws",
    "tcp-echo": "raw TCP",
}

# Per case family: (metric, label, higher is better).
METRICS = {
    "echo": [
        ("msgs_per_server_core_s", "msg/s per server core-s", True),
        ("msgs_per_s", "msg/s", True),
        ("p99_us", "p99 round trip", False),
    ],
    "fanout": [
        ("deliveries_per_server_core_s", "deliveries/s per server core-s", True),
        ("deliveries_per_s", "deliveries/s", True),
        ("p99_us", "p99 publish to receipt", False),
    ],
    "fanout-rate": [
        ("p50_us", "p50 publish to receipt", False),
        ("p99_us", "p99 publish to receipt", False),
    ],
    "idle": [("rss_per_conn_bytes", "server RSS per connection", False)],
    "storm": [
        ("handshakes_per_server_core_s", "handshakes/s per server core-s", True),
        ("handshakes_per_s", "handshakes/s", True),
    ],
    "chat-send": [
        ("acks_per_s", "acked sends/s", True),
        ("acks_per_server_core_s", "acked sends/s per server core-s", True),
        ("p50_us", "p50 send to ack", False),
        ("p99_us", "p99 send to ack", False),
        ("deliveries_per_s", "new_message to the other senders/s", True),
    ],
    "chat-send-rate": [
        ("acks_per_s", "acked sends/s", True),
        ("p50_us", "p50 scheduled send to ack", False),
        ("p99_us", "p99 scheduled send to ack", False),
        ("max_us", "max scheduled send to ack", False),
    ],
    "chat-fanout": [
        ("deliveries_per_server_core_s", "deliveries/s per server core-s", True),
        ("deliveries_per_s", "deliveries/s", True),
        ("p99_us", "p99 send to delivery", False),
    ],
    # Issue 9 §8: the same fan-out with every member confirming what it gets.
    "chat-fanout-receipts": [
        ("deliveries_per_server_core_s", "deliveries/s per server core-s", True),
        ("deliveries_per_s", "deliveries/s", True),
        ("acks_per_s", "acked sends/s", True),
        ("reports_sent_per_s", "received/read reports sent/s", True),
        ("receipt_frames_per_s", "receipt frames received/s", False),
        ("typing_frames", "typing frames received (window)", False),
        ("p99_us", "p99 send to delivery", False),
    ],
    # Issue 9 §3: presence frames per flap of one user in many large groups.
    "chat-presence": [
        ("reload_frames", "frames per reload", False),
        ("leave_frames", "frames per departure", False),
        ("return_frames", "frames per return", False),
        ("watched_reload_frames", "frames per reload, with watchers", False),
        ("watched_leave_frames", "frames per departure, with watchers", False),
        ("watched_return_frames", "frames per return, with watchers", False),
        ("naive_frames_per_flap", "groups x members (no limits, no merging)", False),
    ],
    "chat-sync": [
        ("sync_ms", "sync to synced (median of repeats)", False),
        ("sync_max_ms", "slowest repeat", False),
    ],
    "chat-idle": [("rss_per_conn_bytes", "server RSS per connection", False)],
    "chat-upload": [
        ("mb_per_s", "MB/s, first file_start to last ack", True),
        ("mb_per_server_core_s", "MB per server core-s", True),
    ],
}

# Issue 8's targets: (case, metric, kind, threshold, compared with (case, server) for "ratio").
CHAT_TARGETS = [
    ("chat-send", "acks_per_s", "min", 100000.0, None),
    ("chat-send-own", "acks_per_s", "min", 100000.0, None),
    ("chat-send-10k", "p99_us", "max", 20000.0, None),
    ("chat-send-own-10k", "p99_us", "max", 20000.0, None),
    ("chat-fanout", "deliveries_per_server_core_s", "ratio", 1.0, ("fanout-1000", "tungstenite")),
    # Issue 9 §8: receipts keep the fan-out figure within 20 %.
    ("chat-fanout-receipts", "deliveries_per_server_core_s", "ratio", 0.8, ("chat-fanout", OURS)),
    ("chat-sync", "sync_ms", "max", 100.0, None),
    ("chat-idle", "rss_per_conn_bytes", "max", 4096.0, None),
    # Issue 9 §8, with --durability normal.
    ("chat-upload", "mb_per_s", "min", 500.0, None),
]

# Issue 4's targets: (case, metric, kind, threshold); kind "ratio" compares with
# tokio-tungstenite, "max" is an absolute ceiling on chatgroup's own figure.
TARGETS = [
    ("echo-32b", "msgs_per_server_core_s", "ratio", 3.0),
    ("echo-16k", "msgs_per_server_core_s", "ratio", 1.6),
    ("fanout-1000", "deliveries_per_server_core_s", "ratio", 1.8),
    ("fanout-100hz", "p99_us", "max", 5000.0),
    ("idle-10k", "rss_per_conn_bytes", "max", 2048.0),
    ("idle-19k", "rss_per_conn_bytes", "max", 2048.0),
    ("storm-5k", "handshakes_per_server_core_s", "ratio", 1.5),
]


def family(report):
    scenario = report["scenario"]
    if scenario == "fanout" and report["params"].get("rate"):
        return "fanout-rate"
    if scenario == "chat-send" and report["params"].get("rate"):
        return "chat-send-rate"
    if scenario == "chat-fanout" and (report["params"].get("receipts")
                                      or report["params"].get("typing")):
        return "chat-fanout-receipts"
    return scenario


def fmt(metric, value):
    if value is None:
        return "–"
    if metric.endswith("_ms"):
        return f"{value:.1f} ms"
    if metric.endswith("_us"):
        return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"
    if metric.endswith("_bytes"):
        return f"{value / 1024:.1f} KiB" if value >= 10240 else f"{value:,.0f} B"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def ratio(ours, peer, higher_better):
    if ours is None or peer is None or ours <= 0 or peer <= 0:
        return None
    return ours / peer if higher_better else peer / ours


def main(paths):
    runs = defaultdict(list)  # (tag, server) -> reports
    fam = {}
    order = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line)
                tag = r.get("tag") or r["scenario"]
                runs[(tag, r["server"])].append(r)
                fam[tag] = family(r)
                if tag not in order:
                    order.append(tag)
    servers = [s for s in SERVER_ORDER if any(k[1] == s for k in runs)]
    servers += sorted({k[1] for k in runs} - set(servers))
    peers = [s for s in servers if s != OURS]

    def median(tag, server, metric):
        values = [r["metrics"][metric] for r in runs.get((tag, server), []) if metric in r["metrics"]]
        return statistics.median(values) if values else None

    def errors(tag, server):
        return sum(r["errors"] for r in runs.get((tag, server), []))

    rounds = max((len(v) for v in runs.values()), default=0)
    print(f"Medians of {rounds} run(s); server pinned to core 0, generator to core 1. "
          "Ratios are chatgroup relative to each peer: above 1 means chatgroup is better "
          "(faster, or less latency or memory).")
    if "tcp-echo" in servers:
        print("Raw TCP (no WebSocket at all: bytes read are written back, or a publisher's "
              "bytes written unparsed to every subscriber socket) is the ceiling of the echo "
              "and fan-out cases on this machine; chatgroup's ratio to it is the share of that "
              "ceiling reached.")
    print()
    head = ["case", "figure"] + [SERVER_NAMES.get(s, s) for s in servers]
    if OURS in servers:
        head += [f"× {SERVER_NAMES.get(p, p)}" for p in peers]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
    flagged = []
    for tag in order:
        if fam[tag].startswith("chat"):
            continue
        for metric, label, higher in METRICS.get(fam[tag], []):
            cells = [tag, label]
            for s in servers:
                v = median(tag, s, metric)
                mark = ""
                if errors(tag, s):
                    mark = " (!)"
                    flagged.append((tag, s))
                cells.append(fmt(metric, v) + mark)
            if OURS in servers:
                ours = median(tag, OURS, metric)
                for p in peers:
                    x = ratio(ours, median(tag, p, metric), higher)
                    cells.append("–" if x is None else f"{x:.2f}")
            print("| " + " | ".join(cells) + " |")
    print()

    print("CPU use in the measured window, median, in cores: server / generator / every other "
          "process on the machine. A generator near 1.00 means the generator, not the server, "
          "set the pace; other processes above ~0.2 mean a shared, noisy machine.")
    print()
    print("| case | " + " | ".join(SERVER_NAMES.get(s, s) for s in servers) + " |")
    print("|---|" + "|".join(["---:"] * len(servers)) + "|")
    noisy = 0.0
    for tag in order:
        cells = [tag]
        for s in servers:
            sv, gv = median(tag, s, "server_cpu_util"), median(tag, s, "gen_cpu_util")
            ov = median(tag, s, "other_cpu_util")
            noisy = max(noisy, ov or 0.0)
            if sv is None:
                cells.append("–")
            else:
                cells.append(f"{sv:.2f} / {gv:.2f} / {'–' if ov is None else f'{ov:.2f}'}")
        print("| " + " | ".join(cells) + " |")
    print()
    if noisy > 0.2:
        print(f"Warning: other processes used up to {noisy:.2f} cores during some runs; "
              "rates per server core-second are the more trustworthy figures.")
        print()

    if OURS in servers:
        print("Issue 4's targets:")
        print()
        print("| target | measured | holds |")
        print("|---|---:|:---:|")
        for tag, metric, kind, threshold in TARGETS:
            if tag not in fam:
                continue
            ours = median(tag, OURS, metric)
            if kind == "ratio":
                higher = next(h for m, _, h in METRICS[fam[tag]] if m == metric)
                x = ratio(ours, median(tag, "tungstenite", metric), higher)
                want = f"{tag}: ≥ {threshold:g}× tokio-tungstenite ({metric})"
                got = "–" if x is None else f"{x:.2f}×"
                ok = x is not None and x >= threshold
            else:
                want = f"{tag}: {metric} ≤ {fmt(metric, threshold)}"
                got = fmt(metric, ours)
                ok = ours is not None and ours <= threshold
            print(f"| {want} | {got} | {'yes' if ok else 'no'} |")
        print()

    chat_tags = [t for t in order if fam[t].startswith("chat") and (t, OURS) in runs]
    if chat_tags:
        print_chat(chat_tags, fam, runs, median, errors, flagged)

    if flagged:
        print("(!) runs with errors (lost, repeated or misordered messages, failed connections):")
        for tag, s in sorted(set(flagged)):
            samples = [e for r in runs[(tag, s)] for e in r["error_samples"]][:3]
            print(f"- {tag} on {s}: {errors(tag, s)} error(s), e.g. {'; '.join(samples)}")


def print_chat(tags, fam, runs, median, errors, flagged):
    """The chat section: chatgroup's figures, the fan-out next to the raw broadcasts."""
    print("Chat (issue 8): chatgroup with --durability full (chat-upload: normal), fresh data "
          "directory per case, "
          "server pinned to core 0. chat-fanout is shown next to the raw broadcast "
          "(fanout-1000: 1000 subscribers, 64-byte payloads, window 16) of each server that ran it.")
    print()
    print("| case | parameters | figure | chatgroup | compared with | ratio |")
    print("|---|---|---|---:|---|---:|")
    for tag in tags:
        params = runs[(tag, OURS)][0]["params"]
        shown = ", ".join(f"{k}={v}" for k, v in params.items()
                          if k not in ("warmup_s", "per_source") and v is not None)
        for metric, label, higher in METRICS[fam[tag]]:
            ours = median(tag, OURS, metric)
            mark = ""
            if errors(tag, OURS):
                mark = " (!)"
                flagged.append((tag, OURS))
            print(f"| {tag} | {shown} | {label} | {fmt(metric, ours)}{mark} | | |")
            shown = ""
        if fam[tag] == "chat-fanout":
            metric = "deliveries_per_server_core_s"
            ours = median(tag, OURS, metric)
            for server in ("tungstenite", OURS):
                peer = median("fanout-1000", server, metric)
                if peer is None:
                    continue
                x = ratio(ours, peer, True)
                name = f"{SERVER_NAMES.get(server, server)} raw broadcast fanout-1000: {fmt(metric, peer)}"
                print(f"| {tag} | | deliveries/s per server core-s | {fmt(metric, ours)} | "
                      f"{name} | {'–' if x is None else f'{x:.2f}×'} |")
        if fam[tag] == "chat-fanout-receipts":
            for metric in ("deliveries_per_server_core_s", "deliveries_per_s"):
                ours = median(tag, OURS, metric)
                plain = median("chat-fanout", OURS, metric)
                x = ratio(ours, plain, True)
                print(f"| {tag} | | {metric} | {fmt(metric, ours)} | chat-fanout (no receipts): "
                      f"{fmt(metric, plain)} | {'–' if x is None else f'{x:.2f}×'} |")
    print()
    print("Issue 8's targets:")
    print()
    print("| target | measured | holds |")
    print("|---|---:|:---:|")
    for tag, metric, kind, threshold, against in CHAT_TARGETS:
        if (tag, OURS) not in runs:
            continue
        ours = median(tag, OURS, metric)
        if kind == "ratio":
            case, server = against
            x = ratio(ours, median(case, server, metric), True)
            if case.startswith("chat"):
                want = f"{tag}: {metric} ≥ {threshold:g}× {case}'s"
            else:
                want = (f"{tag}: {metric} ≥ {threshold:g}× {SERVER_NAMES[server]}'s raw "
                        f"broadcast ({case})")
            got = "–" if x is None else f"{x:.2f}×"
            ok = x is not None and x >= threshold
        elif kind == "min":
            want = f"{tag}: {metric} ≥ {fmt(metric, threshold)}"
            got = fmt(metric, ours)
            ok = ours is not None and ours >= threshold
        else:
            want = f"{tag}: {metric} ≤ {fmt(metric, threshold)}"
            got = fmt(metric, ours)
            ok = ours is not None and ours <= threshold
        if errors(tag, OURS):
            ok = False
            got += " (!)"
        print(f"| {want} | {got} | {'yes' if ok else 'no'} |")
    print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: summarize.py RESULTS.jsonl...")
    main(sys.argv[1:])
