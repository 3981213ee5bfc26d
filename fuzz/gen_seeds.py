#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/seeds/<target>/<name>.

    python3 fuzz/gen_seeds.py

Each target's input layout is documented at the top of fuzz/src/<target>.rs; the
seeds here follow it. They are small on purpose: the RFC 6455 examples, the
length boundaries, fragmented messages, UTF-8 edge cases, the handshake examples
and one seed per rule the codec enforces, so libFuzzer starts next to every
branch. Rerunning rewrites the same files.
"""

import os
import shutil
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
TARGETS = ["decode_stream", "assemble_message", "request_head", "response_head", "close_payload", "inflate_message"]

OP = {"cont": 0x0, "text": 0x1, "bin": 0x2, "close": 0x8, "ping": 0x9, "pong": 0xA}
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 §5.7


def frame(op, payload=b"", fin=True, key=None, rsv=0, length=None):
    """One frame on the wire; `length` overrides the header's length field."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | OP.get(op, op if isinstance(op, int) else 0)
    mask_bit = 0x80 if key else 0
    if n < 126:
        head = bytes([b0, mask_bit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mask_bit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mask_bit | 127]) + struct.pack(">Q", n)
    if key:
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def write(target, name, data):
    path = os.path.join(ROOT, target, name)
    with open(path, "wb") as f:
        f.write(data)


def decode_stream():
    # byte 0: bits 0-2 = number of chunk-size bytes, bits 3-4 = limits.
    def seed(name, wire, chunks=(), limits=0):
        write("decode_stream", name, bytes([len(chunks) | limits << 3]) + bytes(chunks) + wire)

    hello_masked = bytes.fromhex("818537fa213d7f9f4d5158")  # RFC 6455 §5.7
    hello = bytes.fromhex("810548656c6c6f")
    seed("rfc_hello_masked", hello_masked)
    seed("rfc_hello_masked_bytewise", hello_masked, chunks=[0])
    seed("rfc_hello_unmasked", hello)
    seed("rfc_fragmented_hello", bytes.fromhex("010348656c80026c6f"), chunks=[1, 2])
    seed("rfc_ping_unmasked", bytes.fromhex("890548656c6c6f"))
    seed("rfc_pong_masked", bytes.fromhex("8a8537fa213d7f9f4d5158"))
    seed("rfc_256_binary", bytes.fromhex("827e0100") + bytes(range(256)), chunks=[3, 100])
    # 64 KiB in the RFC example; here only its header and the first bytes (pending payload).
    seed("rfc_64k_binary_header", bytes.fromhex("827f0000000000010000") + b"abc")
    for n in (0, 1, 125, 126, 127, 128):
        seed(f"len_{n}_masked", frame("bin", bytes(n % 251 for _ in range(n)), key=KEY), chunks=[7])
    seed("len_65535_header", frame("bin", length=65535, key=KEY) + b"xy", limits=0)
    seed("len_65536_header", frame("bin", length=65536, key=KEY), limits=0)
    seed("two_frames_one_read", frame("text", b"a", key=KEY) + frame("ping", b"b", key=KEY))
    seed(
        "fragments_with_ping",
        frame("text", b"Hel", fin=False, key=KEY)
        + frame("ping", b"p", key=KEY)
        + frame("cont", b"lo", key=KEY),
        chunks=[2, 5],
    )
    seed("close_1000", frame("close", close_payload(1000, b"bye"), key=KEY))
    seed("close_then_data", frame("close", b"", key=KEY) + frame("text", b"late", key=KEY))
    seed("close_one_byte", frame("close", b"\x03", key=KEY))
    seed("utf8_split_euro", frame("text", "€".encode()[:2], fin=False, key=KEY) + frame("cont", "€".encode()[2:], key=KEY), chunks=[0])
    seed("utf8_invalid_partial", frame("text", b"ok \xf0\x28\x8c\x28" + b"x" * 40, key=KEY)[:20])
    # Violations, one per rule.
    seed("bad_rsv1", frame("text", b"hi", key=KEY, rsv=4))
    seed("bad_opcode_3", frame(3, b"", key=KEY))
    seed("bad_opcode_b", frame(0xB, b"", key=KEY))
    seed("bad_unmasked_to_server", frame("text", b"hi"))
    seed("bad_ping_fragmented", frame("ping", b"", fin=False, key=KEY))
    seed("bad_ping_126", frame("ping", b"p" * 126, key=KEY))
    seed("bad_len16_nonminimal", bytes.fromhex("82fe007d") + KEY)
    seed("bad_len64_nonminimal", bytes.fromhex("82ff000000000000ffff") + KEY)
    seed("bad_len64_top_bit", bytes.fromhex("82ff8000000000000000") + KEY)
    seed("limit_frame_too_large", frame("bin", b"z" * 200, key=KEY), limits=1)
    seed("limit_small_frames", frame("bin", b"z" * 16, key=KEY) + frame("bin", b"z" * 17, key=KEY), limits=3)
    seed("unexpected_continuation", frame("cont", b"x", key=KEY))
    # Found by fuzzing: one byte of a header with a reserved opcode waits for the second byte.
    seed("trailing_byte_reserved_opcode", bytes.fromhex("810268695b"))
    seed("expected_continuation", frame("text", b"a", fin=False, key=KEY) + frame("text", b"b", key=KEY))


def assemble_message():
    # byte 0: bits 0-1 message limit (16/125/1000/65536), bits 2-4 chunk (0 = whole,
    # k = 1 << (k-1)), bit 5 server role, bit 6 64-byte frame limit.
    # Frames: [flags][len][payload], flags = FIN<<7 | RSV<<4 | opcode.
    def f(op, payload=b"", fin=True, rsv=0):
        return bytes([(0x80 if fin else 0) | rsv << 4 | OP[op], len(payload)]) + payload

    def seed(name, frames, limit=2, chunk=0, server=True, small_frames=False):
        conf = limit | chunk << 2 | (0x20 if server else 0) | (0x40 if small_frames else 0)
        write("assemble_message", name, bytes([conf]) + b"".join(frames))

    seed("single_text", [f("text", b"Hello")])
    seed("single_binary_client", [f("bin", bytes(range(50)))], server=False)
    seed("fragmented_text", [f("text", b"Hel", fin=False), f("cont", b"lo")])
    seed("fragmented_bytewise", [f("text", b"Hel", fin=False), f("cont", b"l", fin=False), f("cont", b"o")], chunk=1)
    seed("ping_between_fragments", [f("text", b"a", fin=False), f("ping", b"p"), f("cont", b"b")], chunk=3)
    seed("pong_unsolicited", [f("pong", b"x"), f("bin", b"y")])
    seed("empty_fragments", [f("bin", b"", fin=False), f("cont", b"", fin=False), f("cont", b"")])
    seed("euro_split_3_ways", [f("text", b"\xe2", fin=False), f("cont", b"\x82", fin=False), f("cont", b"\xac")], chunk=1)
    seed("emoji_split", [f("text", b"a\xf0\x9f", fin=False), f("cont", b"\x98\x80b")], chunk=2)
    seed("utf8_surrogate", [f("text", b"ok\xed\xa0\x80more")], chunk=1)
    seed("utf8_overlong", [f("text", b"\xc0\xaf")])
    seed("utf8_past_10ffff", [f("text", b"x\xf4\x90\x80\x80")], chunk=1)
    seed("utf8_truncated_at_fin", [f("text", b"abc\xe2\x82")])
    seed("utf8_bad_in_second_fragment", [f("text", b"good", fin=False), f("cont", b"\xff")])
    seed("utf8_fail_fast_long_frame", [f("text", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" + b"e" * 200)], chunk=4)
    seed("continuation_without_start", [f("cont", b"x")])
    seed("text_inside_open_message", [f("bin", b"a", fin=False), f("text", b"b")])
    seed("message_too_large", [f("bin", b"x" * 10, fin=False), f("cont", b"y" * 10)], limit=0)
    seed("frame_too_large", [f("bin", b"x" * 65)], small_frames=True)
    seed("ping_126", [f("ping", b"p" * 126)])
    seed("ping_125", [f("ping", b"p" * 125)], limit=1)
    seed("ping_fragmented", [f("ping", b"p", fin=False)])
    seed("rsv_bits", [f("text", b"a", rsv=2)])
    seed("close_normal", [f("close", close_payload(1000, b"done"))])
    seed("close_empty_then_frame", [f("close"), f("text", b"late")])
    seed("close_1005_invalid", [f("close", close_payload(1005))])
    seed("close_bad_reason", [f("close", close_payload(1000, b"\xff"))])
    seed("close_inside_fragments", [f("text", b"a", fin=False), f("close", close_payload(1001))], chunk=2)
    seed("many_small_messages", [f("text", bytes([0x61 + i])) for i in range(20)], chunk=5, server=False)


REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def request_head():
    # byte 0: bits 0-1 head limit (64/256/1024/8192), bits 2-3 header limit
    # (2/8/32/64), bit 4 pick the first offered subprotocol.
    def seed(name, raw, conf=0x03 | 0x0C | 0x10):
        write("request_head", name, bytes([conf]) + raw)

    seed("rfc_example", REQUEST)
    seed("rfc_example_no_protocol_pick", REQUEST, conf=0x0F)
    seed("rfc_example_small_head_limit", REQUEST, conf=0x01 | 0x0C)
    seed("rfc_example_few_headers", REQUEST, conf=0x03 | 0x04)
    seed("partial", REQUEST[:60])
    seed("trailing_frame_bytes", REQUEST + bytes.fromhex("818537fa213d7f9f4d5158"))
    seed("keep_alive_upgrade", REQUEST.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"))
    seed("query", REQUEST.replace(b"GET /chat ", b"GET /chat?room=1&x=%20 "))
    seed("lowercase_headers", REQUEST.lower().replace(b"get /chat http/1.1", b"GET /chat HTTP/1.1").replace(b"dghlihnhbxbszsbub25jzq==", b"dGhlIHNhbXBsZSBub25jZQ=="))
    seed("post", REQUEST.replace(b"GET", b"POST"))
    seed("http10", REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"))
    seed("no_host", REQUEST.replace(b"Host: server.example.com\r\n", b""))
    seed("two_hosts", REQUEST.replace(b"Host: server.example.com\r\n", b"Host: a\r\nHost: b\r\n"))
    seed("upgrade_h2c", REQUEST.replace(b"Upgrade: websocket", b"Upgrade: h2c"))
    seed("connection_close", REQUEST.replace(b"Connection: Upgrade", b"Connection: close"))
    seed("version_8", REQUEST.replace(b"Version: 13", b"Version: 8"))
    seed("no_version", REQUEST.replace(b"Sec-WebSocket-Version: 13\r\n", b""))
    seed("key_short", REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"dGhlIHNhbXBsZQ=="))
    seed("key_not_base64", REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"!!!!!!!!!!!!!!!!!!!!!!=="))
    seed("key_twice", REQUEST.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
    seed("bare_newlines", REQUEST.replace(b"\r\n", b"\n"))
    seed("bad_header_name", REQUEST.replace(b"Origin:", b"Ori gin:"))
    seed("obs_fold", REQUEST.replace(b"Origin: http://example.com\r\n", b"Origin: http://a\r\n  .example\r\n"))
    seed("long_value", REQUEST.replace(b"http://example.com", b"http://" + b"a" * 300), conf=0x02 | 0x0C)
    seed("garbage", bytes(range(0, 256, 7)))


RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
)


def response_head():
    # byte 0: bits 0-1 head limit (64/256/1024/8192), bits 2-3 header limit (2/8/32/64).
    def seed(name, raw, conf=0x0F):
        write("response_head", name, bytes([conf]) + raw)

    seed("rfc_example", RESPONSE)
    seed("rfc_example_then_frame", RESPONSE + bytes.fromhex("810548656c6c6f"))
    seed("no_protocol", RESPONSE.replace(b"Sec-WebSocket-Protocol: chat\r\n", b""))
    seed("superchat", RESPONSE.replace(b": chat", b": superchat"))
    seed("small_limit", RESPONSE, conf=0x01)
    seed("few_headers", RESPONSE, conf=0x03)
    seed("partial", RESPONSE[:40])
    seed("status_200", RESPONSE.replace(b"101 Switching Protocols", b"200 OK"))
    seed("wrong_accept", RESPONSE.replace(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOA="))
    seed("two_accepts", RESPONSE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"))
    seed("no_upgrade", RESPONSE.replace(b"Upgrade: websocket\r\n", b""))
    seed("connection_list", RESPONSE.replace(b"Connection: Upgrade", b"Connection: keep-alive, upgrade"))
    seed("unoffered_protocol", RESPONSE.replace(b": chat", b": mqtt"))
    seed("two_protocols", RESPONSE.replace(b": chat", b": chat, superchat"))
    seed("extension", RESPONSE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
    seed("http10", RESPONSE.replace(b"HTTP/1.1", b"HTTP/1.0"))
    seed("bare_newlines", RESPONSE.replace(b"\r\n", b"\n"))
    seed("garbage", b"HTTP/1.1 1O1 \x00\xff\r\n\r\n")
    # Found by fuzzing: a non-UTF-8 protocol value used to pass as "no protocol chosen".
    seed("regress_non_utf8_protocol", RESPONSE.replace(b": chat", b":\xe0\x8c\x8a\x8f\x9a\x8d\x9c\x8dat"))


def close_payload_seeds():
    def seed(name, payload):
        write("close_payload", name, payload)

    seed("empty", b"")
    seed("one_byte", b"\x03")
    for code in (999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1014, 1015, 1016, 2999, 3000, 4999, 5000, 65535):
        seed(f"code_{code}", close_payload(code))
    seed("reason_ascii", close_payload(1000, b"normal closure"))
    seed("reason_utf8", close_payload(1001, "au revoir, à bientôt".encode()))
    seed("reason_invalid_utf8", close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
    seed("reason_truncated_utf8", close_payload(1000, b"ok\xe2\x82"))
    seed("reason_123_bytes", close_payload(4000, b"r" * 123))
    seed("reason_124_bytes", close_payload(4000, b"r" * 124))
    seed("reason_long_multibyte", close_payload(3000, "é".encode() * 70))


def inflate_message():
    # byte 0: bits 0-1 message limit (16/1000/65536/1 MiB), bits 2-4 chunk (0 = whole,
    # k = 1 << (k-1)), bit 5 server role, bit 6 context takeover.
    # Messages: [flags][len][payload], flags = text | compressed << 1 | (fragments-1) << 2
    # | ping << 5 | compress-it-here << 6 | repeat-64 << 7.
    def deflate(data, level=6):
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def m(payload, text=True, compressed=True, pieces=1, ping=False, ours=False, repeat=False):
        flags = (1 if text else 0) | (2 if compressed else 0) | (pieces - 1) << 2
        flags |= (0x20 if ping else 0) | (0x40 if ours else 0) | (0x80 if repeat else 0)
        return bytes([flags, len(payload)]) + payload

    def seed(name, messages, limit=1, chunk=0, server=True, takeover=False):
        conf = limit | chunk << 2 | (0x20 if server else 0) | (0x40 if takeover else 0)
        write("inflate_message", name, bytes([conf]) + b"".join(messages))

    hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])  # RFC 7692 7.2.3.1
    seed("rfc7692_hello", [m(hello)])
    seed("rfc7692_hello_client_bytewise", [m(hello, pieces=2)], chunk=1, server=False)
    seed("rfc7692_shared_window", [m(hello), m(bytes([0xF2, 0x00, 0x11, 0x00, 0x00]))], takeover=True)
    seed("rfc7692_stored_block", [m(bytes([0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello" + b"\x00")])
    seed("rfc7692_bfinal", [m(bytes([0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00]))])
    seed("rfc7692_two_blocks", [m(bytes([0xF2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xCA, 0xC9, 0xC9, 0x07, 0x00]))])
    seed("empty_message", [m(b"\x00"), m(b"", ours=True)])
    seed("ours_text_fragmented_with_ping", [m("Grüße aus dem Chat ".encode() * 6, pieces=5, ping=True, ours=True)], chunk=3)
    seed("ours_binary_repeated", [m(bytes(range(200)), text=False, ours=True, repeat=True, pieces=8)], limit=2, chunk=6)
    seed("ours_takeover_three", [m(b'{"type":"message","body":"hi"}', ours=True)] * 3, takeover=True, chunk=4)
    seed("ours_over_limit", [m(b"a" * 200, ours=True, repeat=True)], limit=1)
    seed("zlib_json", [m(deflate(b'{"type":"message","from":"alice","body":"hello there"}' * 3), pieces=3)])
    seed("zlib_level_1", [m(deflate(b"abcabcabc" * 20, 1), text=False, pieces=2)], chunk=2)
    seed("zlib_bomb", [m(deflate(bytes(40000), 9), text=False, pieces=4)], limit=1, chunk=5)
    seed("zlib_bomb_one_frame", [m(deflate(bytes(40000), 9), text=False)], limit=0, chunk=4)
    seed("zlib_invalid_utf8", [m(deflate(b"ok \xed\xa0\x80 then more text"), pieces=2)], chunk=1)
    seed("zlib_cut_code_point", [m(deflate("€".encode()[:2]))])
    seed("reserved_block_type", [m(b"\xff\xff")])
    seed("stored_length_mismatch", [m(b"\x00\x05\x00\x00\x00H", text=False)])
    seed("truncated_stream", [m(deflate(b"hello hello hello")[:5])])
    seed("plain_then_compressed", [m(b"plain", compressed=False), m(hello), m(b"\xff", compressed=False)])
    seed("plain_over_limit", [m(b"x" * 100, compressed=False, pieces=3)], limit=0)
    seed("raw_and_ours_mixed", [m(hello), m(b"Hello", ours=True), m(hello)])
    # Found by fuzzing: bad deflate data after about 8 KiB of output; inflated whole it
    # reports the bad data first, fed in pieces it crosses the 1000-byte limit first.
    write("inflate_message", "regress_corrupt_after_much_output", bytes.fromhex(
        "350e38ecc131010000" "00c2a0f54fed65" "0ba000000000000000006000000000"
        "00" + "00" * 16 + "000000000000000000801b00"))


def main():
    for target in TARGETS:
        shutil.rmtree(os.path.join(ROOT, target), ignore_errors=True)
        os.makedirs(os.path.join(ROOT, target))
    decode_stream()
    assemble_message()
    request_head()
    response_head()
    close_payload_seeds()
    inflate_message()


if __name__ == "__main__":
    main()
