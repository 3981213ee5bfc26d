"""Interop: two Python `websockets` clients chat through a chatgroup conversation.

Usage: python3 server_python.py ws://127.0.0.1:PORT/broadcast?conversation_id=N

Protocol with the Rust test that runs this (it is a member of the same conversation):
  1. client a sends "python: hello"; client b must receive it (the sender must not).
  2. the Rust member answers "rust: hello"; both a and b must receive it.
  3. b sends the heartbeat "ping" and must get "pong" (not broadcast).
  4. a sends "python: bye"; both close with 1000.
Exits non-zero on anything unexpected; gives up after 15 seconds.
"""

import asyncio
import sys

import websockets


async def expect(ws, want):
    got = await ws.recv()
    if got != want:
        raise SystemExit(f"expected {want!r}, got {got!r}")
    print(f"received {got!r}", flush=True)


async def main(url):
    async with websockets.connect(url, ping_interval=None) as a, websockets.connect(
        url, ping_interval=None
    ) as b:
        # Both are members once a heartbeat round-trips on each.
        for ws in (a, b):
            await ws.send("ping")
            await expect(ws, "pong")
        await a.send("python: hello")
        await expect(b, "python: hello")
        await expect(a, "rust: hello")
        await expect(b, "rust: hello")
        await b.send("ping")
        await expect(b, "pong")
        await a.send("python: bye")
        await a.close(1000)
        await b.close(1000)
        if a.close_code != 1000 or b.close_code != 1000:
            raise SystemExit(f"close codes {a.close_code} {b.close_code}")
    print("ok", flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), timeout=15))
