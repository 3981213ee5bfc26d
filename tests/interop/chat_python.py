"""Interop: the chat protocol on /ws driven by Python `websockets` (asyncio), as an
integrator would write it from docs/protocol.md alone.

Usage: python3 chat_python.py http://127.0.0.1:PORT

The server is a plain chatgroup server (no --echo needed); tests/e2e/interop.rs starts one
in-process and runs this script against it. Everything goes over the network: REST with
urllib.request from the standard library, the chat socket with websockets.

Two users with fresh names, one direct chat between them, then in order: ready on both
sockets; send -> ack / new_message; the same localId again -> ack with duplicate: true;
received + read -> receipt; typing; user_list; the text heartbeat; a 200 KiB upload in
binary chunks -> ack / new_message of kind file; download (whole and a Range); a message
posted over HTTP arrives live; B reconnects and syncs from a cursor, getting exactly the
missed messages then synced; both close with 1000.

Prints "ok <step>" per step and a final "ok"; on any mismatch prints "FAIL: ..." on stderr
and exits 1. Every wait is bounded (10 s), the whole run too (60 s).
"""

import asyncio
import hashlib
import json
import secrets
import struct
import sys
import urllib.error
import urllib.request

from websockets.asyncio.client import connect

STEP_TIMEOUT = 10
TOTAL_TIMEOUT = 60
PASSWORD = "interop password 1"
FILE_SIZE = 200 * 1024


class Fail(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Fail(message)


def step(label):
    print(f"ok {label}", flush=True)


# ---------------------------------------------------------------------------------------
# REST


def _http(base, method, path, body=None, token=None, headers=None):
    """One request; returns (status, headers, body bytes), whatever the status."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=STEP_TIMEOUT) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def http(base, method, path, body=None, token=None, headers=None):
    # urllib blocks: keep it off the event loop so the sockets keep being read.
    return await asyncio.to_thread(_http, base, method, path, body, token, headers)


async def http_json(base, method, path, body, token, want_status):
    status, _, raw = await http(base, method, path, body, token)
    check(
        status == want_status,
        f"{method} {path}: expected {want_status}, got {status}: {raw[:300]!r}",
    )
    return json.loads(raw)


# ---------------------------------------------------------------------------------------
# The chat socket


class Peer:
    """One chat socket; `expect` reads frames until one matches, skipping (and keeping, for
    the failure message) the events it is not about, as a real client would."""

    def __init__(self, name, ws):
        self.name = name
        self.ws = ws
        self.skipped = []

    async def send(self, obj):
        await self.ws.send(json.dumps(obj))

    async def next_frame(self, what):
        try:
            raw = await asyncio.wait_for(self.ws.recv(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise Fail(
                f"{self.name}: no {what} within {STEP_TIMEOUT} s; "
                f"skipped meanwhile: {self.skipped[-10:]}"
            ) from None
        check(isinstance(raw, str), f"{self.name}: waiting for {what}, got a binary frame")
        if raw == "pong":
            return {"type": "<pong>"}
        try:
            msg = json.loads(raw)
        except ValueError:
            raise Fail(f"{self.name}: waiting for {what}, got non-JSON text {raw[:200]!r}")
        check(isinstance(msg, dict), f"{self.name}: not a JSON object: {raw[:200]!r}")
        if msg.get("type") == "error":
            raise Fail(f"{self.name}: waiting for {what}, got an error: {msg}")
        return msg

    async def expect(self, what, match):
        self.skipped = []
        while True:
            msg = await self.next_frame(what)
            if match(msg):
                return msg
            self.skipped.append(msg)


def of_type(t, **fields):
    def match(msg):
        return msg.get("type") == t and all(msg.get(k) == v for k, v in fields.items())

    return match


async def open_socket(name, base, session, conversation):
    url = base.replace("http://", "ws://", 1) + "/ws?token=" + session["accessToken"]
    ws = await connect(
        url,
        proxy=None,
        compression=None,
        ping_interval=None,
        open_timeout=STEP_TIMEOUT,
        close_timeout=STEP_TIMEOUT,
    )
    peer = Peer(name, ws)
    ready = await peer.expect("ready", of_type("ready"))
    check(ready["user"] == session["user"], f"{name}: ready.user {ready['user']}")
    check(
        isinstance(ready.get("epoch"), str) and ready["epoch"],
        f"{name}: ready without an epoch: {ready}",
    )
    ids = [c["id"] for c in ready["conversations"]]
    check(conversation in ids, f"{name}: conversation {conversation} not in ready: {ids}")
    return peer


async def close(peer):
    await peer.ws.close(1000)
    code = peer.ws.close_code
    check(code == 1000, f"{peer.name}: closed with 1000, the server answered {code}")


def file_bytes(n):
    # Known, non-repeating in small periods, so an offset or masking mistake shows.
    return bytes(((i * 131) ^ (i >> 7) ^ (i >> 13)) & 0xFF for i in range(n))


def same_message(got, want, label):
    for key in ("conversation", "id", "seq", "ts", "localId"):
        check(got.get(key) == want.get(key), f"{label}: {key} {got.get(key)!r} != {want.get(key)!r}")


async def run(base):
    tag = secrets.token_hex(4)
    name_a, name_b = f"py-a-{tag}", f"py-b-{tag}"

    # -- accounts and the direct chat ---------------------------------------------------
    sa = await http_json(base, "POST", "/api/register", {"username": name_a, "password": PASSWORD}, None, 201)
    sb = await http_json(base, "POST", "/api/register", {"username": name_b, "password": PASSWORD}, None, 201)
    check(sa["user"]["username"] == name_a and sa["accessToken"], f"register A: {sa}")
    check(sb["user"]["username"] == name_b and sb["accessToken"], f"register B: {sb}")
    id_a, id_b = sa["user"]["id"], sb["user"]["id"]
    step("register")

    conv = await http_json(
        base, "POST", "/api/conversations", {"kind": "direct", "with": name_b}, sa["accessToken"], 201
    )
    check(conv["kind"] == "direct", f"create direct: {conv}")
    check(
        sorted(m["id"] for m in conv["members"]) == sorted([id_a, id_b]),
        f"create direct: members {conv['members']}",
    )
    check(conv["name"] == name_b, f"create direct: A should see it named {name_b}: {conv['name']}")
    cid = conv["id"]
    step("direct chat")

    a = await open_socket("A", base, sa, cid)
    b = await open_socket("B", base, sb, cid)
    step("ready")

    # -- send, ack, new_message, duplicate --------------------------------------------
    local_id = f"py-{tag}-1"
    send = {"type": "send", "conversation": cid, "localId": local_id, "body": "hello from python"}
    await a.send(send)
    ack = await a.expect("ack", of_type("ack", localId=local_id))
    check(ack["conversation"] == cid and isinstance(ack["seq"], int), f"ack: {ack}")
    check(not ack.get("duplicate"), f"first ack says duplicate: {ack}")
    seq1 = ack["seq"]
    msg = await b.expect("new_message", of_type("new_message", conversation=cid))
    same_message(msg, ack, "B's new_message vs A's ack")
    check(
        msg["sender"] == id_a and msg["senderName"] == name_a and msg["kind"] == "text"
        and msg["body"] == "hello from python",
        f"B's new_message: {msg}",
    )
    step("send")

    await a.send(send)
    dup = await a.expect("duplicate ack", of_type("ack", localId=local_id))
    check(dup.get("duplicate") is True, f"retried send: no duplicate: true: {dup}")
    check(dup["id"] == ack["id"] and dup["seq"] == seq1, f"retried send: {dup} vs {ack}")
    step("duplicate send")

    # -- receipts ------------------------------------------------------------------------
    await b.send({"type": "received", "conversation": cid, "seq": seq1})
    await b.send({"type": "read", "conversation": cid, "seq": seq1})

    def b_read(m):
        return of_type("receipt", conversation=cid, user=id_b)(m) and m.get("read") == seq1

    receipt = await a.expect(f"receipt of B read {seq1}", b_read)
    check(receipt["delivered"] == seq1, f"receipt: delivered {receipt}")
    step("receipt")

    # -- typing, user_list, heartbeat ---------------------------------------------------
    await a.send({"type": "typing", "conversation": cid, "state": "start"})
    await b.expect("typing start", of_type("typing", conversation=cid, user=id_a, state="start"))
    step("typing")

    await b.send({"type": "user_list", "conversation": cid, "ref": "who"})
    ul = await b.expect("user_list", of_type("user_list", conversation=cid, ref="who"))
    online = {m["id"]: m.get("online") for m in ul["members"]}
    check(online == {id_a: True, id_b: True}, f"user_list: {ul['members']}")
    step("user_list")

    await a.ws.send("ping")
    await a.expect("pong", of_type("<pong>"))
    step("heartbeat")

    # -- file upload over the socket --------------------------------------------------
    data = file_bytes(FILE_SIZE)
    digest = hashlib.sha256(data).hexdigest()
    upload_id = f"py-{tag}-file"
    await a.send({
        "type": "file_start", "conversation": cid, "uploadId": upload_id, "name": "notes.bin",
        "size": FILE_SIZE, "mime": "application/x-interop", "sha256": digest,
    })
    ready = await a.expect("file_ready", of_type("file_ready", uploadId=upload_id))
    check(ready["offset"] == 0 and ready.get("ref") == upload_id, f"file_ready: {ready}")
    file_id, chunk = ready["fileId"], ready["chunkSize"]
    check(isinstance(chunk, int) and 0 < chunk, f"file_ready chunkSize: {ready}")
    chunks = 0
    for offset in range(0, FILE_SIZE, chunk):
        await a.ws.send(struct.pack(">QQ", file_id, offset) + data[offset:offset + chunk])
        chunks += 1
    await a.send({"type": "file_end", "fileId": file_id})
    fack = await a.expect("ack of the file", of_type("ack", localId=upload_id))
    check(fack["conversation"] == cid and fack["seq"] == seq1 + 1, f"file ack: {fack} (text was {seq1})")

    # Sending a file stops typing: B hears the stop before the file message.
    fmsg = None
    stopped = False
    while fmsg is None:
        m = await b.expect("typing stop / file message", lambda m: m.get("type") in ("typing", "new_message"))
        if m["type"] == "typing":
            check(m["user"] == id_a and m["state"] == "stop", f"typing after the upload: {m}")
            stopped = True
        else:
            fmsg = m
    check(stopped, "B got the file message without the typing stop before it")
    same_message(fmsg, fack, "B's file new_message vs A's ack")
    check(fmsg["kind"] == "file" and fmsg["body"] == "notes.bin", f"file new_message: {fmsg}")
    want_file = {"id": file_id, "name": "notes.bin", "size": FILE_SIZE, "mime": "application/x-interop", "sha256": digest}
    check(fmsg.get("file") == want_file, f"file object: {fmsg.get('file')} != {want_file}")
    step(f"upload ({chunks} chunks of {chunk})")

    # -- download --------------------------------------------------------------------
    status, headers, body = await http(base, "GET", f"/api/files/{file_id}", token=sb["accessToken"])
    check(status == 200, f"download: {status} {body[:200]!r}")
    check(body == data, f"download: {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()}")
    check(headers.get("Content-Length") == str(FILE_SIZE), f"download Content-Length {headers.get('Content-Length')}")
    check(headers.get("Content-Type") == "application/x-interop", f"download Content-Type {headers.get('Content-Type')}")
    check(headers.get("Accept-Ranges") == "bytes", f"download Accept-Ranges {headers.get('Accept-Ranges')}")
    check(headers.get("X-Content-Type-Options") == "nosniff", "download: no X-Content-Type-Options: nosniff")
    check('filename="notes.bin"' in (headers.get("Content-Disposition") or ""), f"Content-Disposition {headers.get('Content-Disposition')}")
    status, headers, body = await http(
        base, "GET", f"/api/files/{file_id}", token=sb["accessToken"], headers={"Range": "bytes=100-199"}
    )
    check(status == 206, f"range download: {status} {body[:200]!r}")
    check(body == data[100:200], f"range download: wrong bytes ({len(body)})")
    check(
        headers.get("Content-Range") == f"bytes 100-199/{FILE_SIZE}",
        f"range download Content-Range {headers.get('Content-Range')}",
    )
    step("download")

    # -- a message posted over HTTP arrives live ------------------------------------
    post = {"conversation": cid, "localId": f"py-{tag}-http", "body": "posted over http"}
    hack = await http_json(base, "POST", "/api/messages", post, sa["accessToken"], 201)
    check(hack.get("type") == "ack" and hack["seq"] == fack["seq"] + 1, f"POST /api/messages: {hack}")
    hmsg = await b.expect("the posted message", of_type("new_message", conversation=cid, seq=hack["seq"]))
    same_message(hmsg, hack, "B's new_message vs the HTTP ack")
    check(hmsg["body"] == "posted over http", f"posted message: {hmsg}")
    own = await a.expect("the posted message on A", of_type("new_message", conversation=cid, seq=hack["seq"]))
    same_message(own, hack, "A's new_message vs the HTTP ack")
    again = await http_json(base, "POST", "/api/messages", post, sa["accessToken"], 200)
    check(again.get("duplicate") is True and again["id"] == hack["id"], f"POST retry: {again}")
    step("post over http")

    # -- reconnect and sync -------------------------------------------------------------
    await close(b)
    b = await open_socket("B again", base, sb, cid)
    await b.send({"type": "sync", "cursors": {str(cid): seq1}, "ref": "s1"})
    replayed = []
    while True:
        m = await b.expect("sync_batch or synced", lambda m: m.get("type") in ("sync_batch", "synced", "new_message"))
        check(m["type"] != "new_message", f"a new_message during the sync with nothing new sent: {m}")
        if m["type"] == "synced":
            break
        check(m["conversation"] == cid, f"sync_batch for another conversation: {m}")
        replayed.extend(m["messages"])
    check(m.get("ref") == "s1", f"synced without ref s1: {m}")
    check(m["cursors"] == {str(cid): hack["seq"]}, f"synced cursors {m['cursors']}")
    got = [(r["seq"], r["id"]) for r in replayed]
    want = [(fack["seq"], fack["id"]), (hack["seq"], hack["id"])]
    check(got == want, f"sync from {seq1} replayed (seq, id) {got}, expected {want}")
    check(replayed[0].get("file") == want_file, f"replayed file message: {replayed[0]}")
    step("sync")

    await close(a)
    await close(b)
    step("close 1000")


async def main(base):
    try:
        await asyncio.wait_for(run(base.rstrip("/")), TOTAL_TIMEOUT)
    except asyncio.TimeoutError:
        raise Fail(f"gave up after {TOTAL_TIMEOUT} s") from None


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python3 chat_python.py http://HOST:PORT", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(sys.argv[1]))
    except Fail as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("ok", flush=True)
