// Interop: two Node `ws` clients chat through a chatgroup conversation.
//
// Usage: node server_node.mjs ws://127.0.0.1:PORT/broadcast?conversation_id=N
// (run with NODE_PATH=tests/interop/node_modules or from this directory)
//
// Same script as server_python.py: a says "node: hello", b hears it; the Rust member answers
// "rust: hello" and both hear it; b's "ping" gets "pong"; a says "node: bye"; both close 1000.
// Exits non-zero on anything unexpected; gives up after 15 seconds.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");

const url = process.argv[2];
const fail = (why) => {
  console.error(why);
  process.exit(1);
};
setTimeout(() => fail("timed out"), 15000).unref();

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const queue = [];
    const waiters = [];
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? `<binary ${data.length}>` : data.toString("utf8");
      const w = waiters.shift();
      if (w) w(text);
      else queue.push(text);
    });
    ws.next = () =>
      queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r));
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

async function expect(ws, want) {
  const got = await ws.next();
  if (got !== want) fail(`expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  console.log(`received ${JSON.stringify(got)}`);
}

function closed(ws) {
  return new Promise((resolve) => ws.once("close", (code) => resolve(code)));
}

const a = await open(url);
const b = await open(url);
for (const ws of [a, b]) {
  ws.send("ping");
  await expect(ws, "pong");
}
a.send("node: hello");
await expect(b, "node: hello");
await expect(a, "rust: hello");
await expect(b, "rust: hello");
b.send("ping");
await expect(b, "pong");
a.send("node: bye");
const codes = await Promise.all([closed(a), closed(b), a.close(1000), b.close(1000)]);
if (codes[0] !== 1000 || codes[1] !== 1000) fail(`close codes ${codes}`);
console.log("ok");
process.exit(0);
