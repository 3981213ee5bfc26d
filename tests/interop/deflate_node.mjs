// Interop: Node `ws` with permessage-deflate against a chatgroup server.
//
// Usage: node deflate_node.mjs ws://127.0.0.1:PORT
// (run with NODE_PATH=tests/interop/node_modules or from this directory)
//
// Same checks as deflate_python.py: /echo agrees to permessage-deflate (ws.extensions);
// text and binary messages from 10 bytes to 1 MiB, all sent compressed (threshold 0), come
// back byte for byte; two clients in one /broadcast conversation exchange 20 JSON messages
// each way, in order. The Rust test reads /metrics afterwards to check that compressed
// messages went both ways. Prints "ok" last; exits 1 on anything unexpected; gives up after
// 60 seconds.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");

const base = process.argv[2];
const fail = (why) => {
  console.error(`FAIL ${why}`);
  process.exit(1);
};
setTimeout(() => fail("timed out"), 60000).unref();

const SIZES = [10, 300, 4000, 70000, 1 << 20];

function chatJson(n, seed) {
  const items = [];
  let size = 2;
  for (let i = seed; size < n; i++) {
    const item = JSON.stringify({
      type: "new_message",
      id: i,
      from: `user-${i % 7}`,
      body: `grüße ${i} — see you at the standup`,
    });
    items.push(item);
    size += Buffer.byteLength(item) + 1;
  }
  return `[${items.join(",")}]`;
}

function blob(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 9)) & 0xff;
  return b;
}

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 }, maxPayload: 0 });
    const queue = [];
    const waiters = [];
    ws.on("message", (data, isBinary) => {
      const msg = isBinary ? { binary: Buffer.from(data) } : { text: data.toString("utf8") };
      const w = waiters.shift();
      if (w) w(msg);
      else queue.push(msg);
    });
    ws.next = () =>
      queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r));
    ws.once("open", () => {
      if (!ws.extensions.includes("permessage-deflate")) {
        fail(`no permessage-deflate agreed (${JSON.stringify(ws.extensions)})`);
      }
      resolve(ws);
    });
    ws.once("error", reject);
  });
}

async function expectText(ws, want, label) {
  const got = await ws.next();
  if (got.text !== want) fail(`${label}: got ${JSON.stringify(got).slice(0, 80)}`);
  console.log(`ok ${label}`);
}

async function expectBinary(ws, want, label) {
  const got = await ws.next();
  if (!got.binary || !got.binary.equals(want)) fail(`${label}: wrong binary`);
  console.log(`ok ${label}`);
}

function close(ws) {
  return new Promise((resolve) => {
    ws.once("close", resolve);
    ws.close(1000);
  });
}

const echo = await open(`${base}/echo`);
console.log(`ok agreed: ${echo.extensions}`);
for (const n of SIZES) {
  const text = chatJson(n, n);
  echo.send(text);
  await expectText(echo, text, `text ${Buffer.byteLength(text)}`);
  const bin = blob(n);
  echo.send(bin);
  await expectBinary(echo, bin, `binary ${n}`);
}
await close(echo);

const url = `${base}/broadcast?conversation_id=42`;
const a = await open(url);
const b = await open(url);
for (const ws of [a, b]) {
  ws.send("ping");
  await expectText(ws, "pong", "heartbeat");
}
for (const [sender, receiver, name] of [
  [a, b, "a to b"],
  [b, a, "b to a"],
]) {
  for (let i = 0; i < 20; i++) {
    const text = chatJson(600, i);
    sender.send(text);
    await expectText(receiver, text, `${name} ${i}`);
  }
}
await Promise.all([close(a), close(b)]);
console.log("ok");
process.exit(0);
