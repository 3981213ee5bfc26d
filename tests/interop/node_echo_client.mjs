// Interop: the Node `ws` client against an rfc6455 echo server.
//
// Usage: node node_echo_client.mjs ws://127.0.0.1:PORT[/PATH]
//
// The server is the `echo_server` example of crates/rfc6455 (the Rust test
// crates/rfc6455/tests/interop_clients.rs runs it in-process on a free port).
// Checks, in order:
//   1. text and binary messages of 0, 1, 125, 126, 127, 65535, 65536 bytes and
//      4 MiB come back byte for byte;
//   2. multi-byte UTF-8 text comes back unchanged;
//   3. fragmented messages (several frames, one fragment empty) come back reassembled;
//   4. a ping with a payload is answered by a pong with the same payload;
//   5. closing with 4000 "bye" gets a close frame with code 4000 back.
// Prints one line per check; prints FAIL and what it got and exits 1 on any
// mismatch; gives up after 60 seconds in all.

import WebSocket from 'ws';

const SIZES = [0, 1, 125, 126, 127, 65535, 65536, 4 << 20];
const STEP_TIMEOUT_MS = 20000;
const MULTIBYTE = 'héllo wörld — € 𝄞 κόσμε';

function fail(message) {
  console.log(`FAIL: ${message}`);
  process.exit(1);
}

setTimeout(() => fail('gave up after 60 s'), 60000).unref();

function blob(n, seed) {
  // Not periodic in 4 bytes, so a masking mistake cannot cancel out.
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = ((i * 31 + seed) ^ (i >> 8)) & 0xff;
  return out;
}

function text(n) {
  let alphabet = '';
  for (let i = 0; i < 997; i++) alphabet += String.fromCharCode(33 + (i % 90));
  return alphabet.repeat(Math.floor(n / alphabet.length) + 1).slice(0, n);
}

function describe(data, isBinary) {
  const kind = isBinary ? 'binary' : 'text';
  return `${kind} of ${data.length} bytes starting ${JSON.stringify(data.subarray(0, 40).toString('latin1'))}`;
}

const url = process.argv[2];
if (!url) fail('usage: node node_echo_client.mjs ws://HOST:PORT[/PATH]');

const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20 });

// Every event lands in one queue; `next(kind)` takes the next one or fails after a timeout.
const events = [];
let wake = null;
function push(event) {
  events.push(event);
  if (wake) {
    wake();
    wake = null;
  }
}
ws.on('message', (data, isBinary) => push({ kind: 'message', data, isBinary }));
ws.on('pong', (data) => push({ kind: 'pong', data }));
ws.on('close', (code, reason) => push({ kind: 'close', code, reason: reason.toString() }));
ws.on('error', (err) => fail(`socket error: ${err.message}`));

async function next(label) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (events.length === 0) {
    const left = deadline - Date.now();
    if (left <= 0) fail(`${label}: nothing arrived within ${STEP_TIMEOUT_MS} ms`);
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, left);
    });
  }
  return events.shift();
}

async function expectEcho(sent, isBinary, label) {
  const got = await next(label);
  const want = isBinary ? sent : Buffer.from(sent, 'utf8');
  if (got.kind !== 'message' || got.isBinary !== isBinary || !want.equals(got.data)) {
    const seen = got.kind === 'message' ? describe(got.data, got.isBinary) : JSON.stringify(got);
    fail(`${label}: sent ${describe(want, isBinary)}, got ${seen}`);
  }
  console.log(`ok ${label}`);
}

await new Promise((resolve) => ws.once('open', resolve));

for (const n of SIZES) {
  const t = text(n);
  ws.send(t);
  await expectEcho(t, false, `text ${n}`);
  const b = blob(n, n & 0xff);
  ws.send(b);
  await expectEcho(b, true, `binary ${n}`);
}

ws.send(MULTIBYTE);
await expectEcho(MULTIBYTE, false, 'multi-byte text');

// `fin: false` sends a fragment; the frame with `fin: true` ends the message.
ws.send('Hello, ', { fin: false });
ws.send('', { fin: false });
ws.send('wörld', { fin: true });
await expectEcho('Hello, wörld', false, 'fragmented text');
ws.send(Buffer.from([0, 1]), { binary: true, fin: false });
ws.send(Buffer.from([0xfe, 0xff]), { binary: true, fin: true });
await expectEcho(Buffer.from([0, 1, 0xfe, 0xff]), true, 'fragmented binary');

ws.ping(Buffer.from('are you there?'));
const pong = await next('ping');
if (pong.kind !== 'pong' || pong.data.toString() !== 'are you there?') {
  fail(`ping: expected a pong with our payload, got ${JSON.stringify(pong)}`);
}
console.log('ok ping');

ws.close(4000, 'bye');
const closed = await next('close');
if (closed.kind !== 'close' || closed.code !== 4000) {
  fail(`close: sent 4000, got ${JSON.stringify(closed)}`);
}
console.log('ok close 4000');
console.log('ok');
process.exit(0);
