"""Interop: Python `websockets` with permessage-deflate against a chatgroup server.

Usage: python3 deflate_python.py ws://127.0.0.1:PORT

The server runs with --echo and the --deflate mode under test; the Rust test that starts
it (tests/e2e/interop.rs) reads /metrics afterwards to check that compressed messages went
both ways. Checks, in order:
  1. /echo agrees to permessage-deflate (the 101's Sec-WebSocket-Extensions);
  2. text (chat-like JSON, multi-byte UTF-8) and binary messages from 10 bytes to 1 MiB,
     sent compressed, come back byte for byte;
  3. two clients in one /broadcast conversation exchange 20 JSON messages each way, in
     order (with context takeover, each side's history spans all of them).
Prints one line per check, then "ok"; exits 1 on any mismatch; gives up after 60 seconds.
"""

import asyncio
import json
import sys

import websockets

SIZES = [10, 300, 4000, 70000, 1 << 20]


def chat_json(n, seed):
    items, size, i = [], 2, seed
    while size < n:
        item = json.dumps({"type": "new_message", "id": i, "from": f"user-{i % 7}",
                           "body": f"grüße {i} — see you at the standup"})
        items.append(item)
        size += len(item.encode()) + 1
        i += 1
    return "[" + ",".join(items) + "]"


def blob(n):
    return bytes((i * 7 + (i >> 9)) & 0xFF for i in range(n))


async def expect(ws, sent, label):
    got = await ws.recv()
    if type(got) is not type(sent) or got != sent:
        raise SystemExit(f"FAIL {label}: got {str(got)[:60]!r}")
    print(f"ok {label}", flush=True)


def agreed(ws):
    value = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    if "permessage-deflate" not in value:
        raise SystemExit(f"FAIL: no permessage-deflate in the 101 ({value!r})")
    return value


async def main(base):
    opts = dict(compression="deflate", max_size=None, ping_interval=None)
    async with websockets.connect(base + "/echo", **opts) as ws:
        print(f"ok agreed: {agreed(ws)}", flush=True)
        for n in SIZES:
            sent = chat_json(n, n)
            await ws.send(sent)
            await expect(ws, sent, f"text {len(sent.encode())}")
            sent = blob(n)
            await ws.send(sent)
            await expect(ws, sent, f"binary {n}")

    url = base + "/broadcast?conversation_id=41"
    async with websockets.connect(url, **opts) as a, websockets.connect(url, **opts) as b:
        agreed(a)
        agreed(b)
        # Both are members once a heartbeat round-trips on each.
        for ws in (a, b):
            await ws.send("ping")
            await expect(ws, "pong", "heartbeat")
        for sender, receiver, name in ((a, b, "a to b"), (b, a, "b to a")):
            for i in range(20):
                sent = chat_json(600, i)
                await sender.send(sent)
                await expect(receiver, sent, f"{name} {i}")
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), timeout=60))
