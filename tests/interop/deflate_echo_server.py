"""Interop: a Python `websockets` echo server with permessage-deflate, for our codec's
client role.

Usage: python3 deflate_echo_server.py
Listens on a free port of 127.0.0.1, prints "listening PORT", and echoes every message
with websockets' default compression (server_max_window_bits=12, context takeover unless the
client asks otherwise). crates/rfc6455/tests/interop_deflate_servers.rs starts it and kills
it when done; it also stops by itself after 60 seconds.
"""

import asyncio

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    async with serve(echo, "127.0.0.1", 0, compression="deflate", max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        await asyncio.sleep(60)


if __name__ == "__main__":
    asyncio.run(main())
