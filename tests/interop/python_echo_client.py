"""Interop: the Python `websockets` client against an rfc6455 echo server.

Usage: python3 python_echo_client.py ws://127.0.0.1:PORT[/PATH]

The server is the `echo_server` example of crates/rfc6455 (the Rust test
crates/rfc6455/tests/interop_clients.rs runs it in-process on a free port).
Checks, in order:
  1. text and binary messages of 0, 1, 125, 126, 127, 65535, 65536 bytes and
     4 MiB come back byte for byte;
  2. multi-byte UTF-8 text comes back unchanged;
  3. fragmented messages (sent as several frames, one fragment empty) come
     back reassembled;
  4. a ping with a payload is answered by a pong with the same payload;
  5. closing with 4000 "bye" gets a close frame with code 4000 back.
Prints one line per check; prints FAIL and what it got and exits 1 on any
mismatch; gives up after 20 seconds per step.
"""

import sys

from websockets.sync.client import connect

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 4 << 20]
STEP_TIMEOUT = 20
MULTIBYTE = "héllo wörld — € 𝄞 κόσμε"


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def describe(data):
    kind = "text" if isinstance(data, str) else "binary"
    size = len(data.encode()) if isinstance(data, str) else len(data)
    head = data[:40]
    return f"{kind} of {size} bytes starting {head!r}"


def blob(n, seed):
    # Not periodic in 4 bytes, so a masking mistake cannot cancel out.
    pattern = bytes(((i * 31 + seed) ^ (i >> 8)) & 0xFF for i in range(65536))
    return (pattern * (n // len(pattern) + 1))[:n]


def text(n):
    alphabet = "".join(chr(33 + i % 90) for i in range(997))
    return (alphabet * (n // len(alphabet) + 1))[:n]


def expect(ws, sent, label):
    got = ws.recv(timeout=STEP_TIMEOUT)
    if type(got) is not type(sent) or got != sent:
        fail(f"{label}: sent {describe(sent)}, got {describe(got)}")
    print(f"ok {label}", flush=True)


def main(url):
    with connect(
        url,
        proxy=None,
        compression=None,
        max_size=None,
        ping_interval=None,
        open_timeout=STEP_TIMEOUT,
        close_timeout=STEP_TIMEOUT,
    ) as ws:
        for n in SIZES:
            sent = text(n)
            ws.send(sent)
            expect(ws, sent, f"text {n}")
            sent = blob(n, n & 0xFF)
            ws.send(sent)
            expect(ws, sent, f"binary {n}")

        ws.send(MULTIBYTE)
        expect(ws, MULTIBYTE, "multi-byte text")

        # An iterable is sent as one fragmented message, one frame per item.
        ws.send(["Hello, ", "", "wörld"])
        expect(ws, "Hello, wörld", "fragmented text")
        ws.send([b"\x00\x01", b"", b"\xfe\xff"])
        expect(ws, b"\x00\x01\xfe\xff", "fragmented binary")

        pong = ws.ping(b"are you there?")
        if not pong.wait(STEP_TIMEOUT):
            fail("no pong for our ping")
        print("ok ping", flush=True)

        ws.close(4000, "bye")
        if ws.close_code != 4000:
            fail(f"close: sent 4000, got {ws.close_code} {ws.close_reason!r}")
        print("ok close 4000", flush=True)
    print("ok", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: python3 python_echo_client.py ws://HOST:PORT[/PATH]")
    main(sys.argv[1])
