// Interop: the chat protocol on /ws driven by Node `ws`, as an integrator would write it
// from docs/protocol.md alone.
//
// Usage: node chat_node.mjs http://127.0.0.1:PORT
//
// The server is a plain chatgroup server (no --echo needed); tests/e2e/interop.rs starts one
// in-process and runs this script against it. Everything goes over the network: REST with
// Node's global fetch, the chat socket with ws.
//
// The same flow as chat_python.py: two fresh users and a direct chat; ready on both sockets;
// send -> ack / new_message; the same localId again -> ack with duplicate: true; received +
// read -> receipt; typing; user_list; the text heartbeat; a 200 KiB upload in binary chunks ->
// ack / new_message of kind file; download (whole and a Range); a message posted over HTTP
// arrives live; B reconnects and syncs from a cursor, getting exactly the missed messages
// then synced; both close with 1000.
//
// Prints "ok <step>" per step and a final "ok"; on any mismatch prints "FAIL: ..." on stderr
// and exits 1. Every wait is bounded (10 s), the whole run too (60 s).

import { createHash, randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';

const STEP_TIMEOUT_MS = 10000;
const TOTAL_TIMEOUT_MS = 60000;
const PASSWORD = 'interop password 1';
const FILE_SIZE = 200 * 1024;

class Fail extends Error {}

function check(cond, message) {
  if (!cond) throw new Fail(message);
}

function step(label) {
  console.log(`ok ${label}`);
}

const show = (v) => JSON.stringify(v);

// ---------------------------------------------------------------------------------------
// REST

async function http(base, method, path, { body, token, headers = {} } = {}) {
  const h = { ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (token !== undefined) h.Authorization = `Bearer ${token}`;
  const res = await fetch(base + path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function httpJson(base, method, path, body, token, wantStatus) {
  const res = await http(base, method, path, { body, token });
  const text = res.bytes.toString('utf8');
  check(res.status === wantStatus, `${method} ${path}: expected ${wantStatus}, got ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

// ---------------------------------------------------------------------------------------
// The chat socket

// One chat socket. Every frame lands in a queue; `expect` takes frames until one matches,
// skipping (and keeping, for the failure message) the events it is not about, as a real
// client would.
class Peer {
  constructor(name, ws) {
    this.name = name;
    this.ws = ws;
    this.queue = [];
    this.wake = null;
    this.closed = null;
    this.skipped = [];
    ws.on('message', (data, isBinary) => this.push({ data, isBinary }));
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.push({ close: this.closed });
    });
    ws.on('error', (err) => this.push({ error: err }));
  }

  push(event) {
    this.queue.push(event);
    if (this.wake) {
      this.wake();
      this.wake = null;
    }
  }

  async nextEvent(what) {
    while (this.queue.length === 0) {
      let timer;
      let timedOut = false;
      await new Promise((resolve) => {
        this.wake = resolve;
        timer = setTimeout(() => {
          timedOut = true;
          resolve();
        }, STEP_TIMEOUT_MS);
      });
      clearTimeout(timer);
      if (this.queue.length === 0 && timedOut) {
        throw new Fail(`${this.name}: no ${what} within ${STEP_TIMEOUT_MS / 1000} s; skipped meanwhile: ${show(this.skipped.slice(-10))}`);
      }
    }
    return this.queue.shift();
  }

  async nextFrame(what) {
    const ev = await this.nextEvent(what);
    if (ev.error) throw new Fail(`${this.name}: socket error while waiting for ${what}: ${ev.error.message}`);
    if (ev.close) throw new Fail(`${this.name}: closed (${ev.close.code} ${ev.close.reason}) while waiting for ${what}`);
    check(!ev.isBinary, `${this.name}: waiting for ${what}, got a binary frame`);
    const text = ev.data.toString('utf8');
    if (text === 'pong') return { type: '<pong>' };
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      throw new Fail(`${this.name}: waiting for ${what}, got non-JSON text ${show(text.slice(0, 200))}`);
    }
    check(msg && typeof msg === 'object' && !Array.isArray(msg), `${this.name}: not a JSON object: ${text.slice(0, 200)}`);
    if (msg.type === 'error') throw new Fail(`${this.name}: waiting for ${what}, got an error: ${text}`);
    return msg;
  }

  async expect(what, match) {
    this.skipped = [];
    for (;;) {
      const msg = await this.nextFrame(what);
      if (match(msg)) return msg;
      this.skipped.push(msg);
    }
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  async close() {
    this.ws.close(1000);
    for (;;) {
      const ev = await this.nextEvent('the close reply');
      if (ev.close) break;
      if (ev.error) throw new Fail(`${this.name}: socket error while closing: ${ev.error.message}`);
    }
    check(this.closed.code === 1000, `${this.name}: closed with 1000, the server answered ${this.closed.code} ${this.closed.reason}`);
  }
}

const ofType = (type, fields = {}) => (msg) =>
  msg.type === type && Object.entries(fields).every(([k, v]) => msg[k] === v);

async function openSocket(name, base, session, conversation) {
  const url = `${base.replace(/^http:/, 'ws:')}/ws?token=${encodeURIComponent(session.accessToken)}`;
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: STEP_TIMEOUT_MS });
  const peer = new Peer(name, ws);
  const ready = await peer.expect('ready', ofType('ready'));
  check(isDeepStrictEqual(ready.user, session.user), `${name}: ready.user ${show(ready.user)}`);
  check(typeof ready.epoch === 'string' && ready.epoch.length > 0, `${name}: ready without an epoch: ${show(ready)}`);
  const ids = ready.conversations.map((c) => c.id);
  check(ids.includes(conversation), `${name}: conversation ${conversation} not in ready: ${show(ids)}`);
  return peer;
}

function fileBytes(n) {
  // Known, non-repeating in small periods, so an offset or masking mistake shows.
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = ((i * 131) ^ (i >> 7) ^ (i >> 13)) & 0xff;
  return out;
}

function sameMessage(got, want, label) {
  for (const key of ['conversation', 'id', 'seq', 'ts', 'localId']) {
    check(got[key] === want[key], `${label}: ${key} ${show(got[key])} !== ${show(want[key])}`);
  }
}

async function run(base) {
  const tag = randomBytes(4).toString('hex');
  const nameA = `js-a-${tag}`;
  const nameB = `js-b-${tag}`;

  // -- accounts and the direct chat -------------------------------------------------
  const sa = await httpJson(base, 'POST', '/api/register', { username: nameA, password: PASSWORD }, undefined, 201);
  const sb = await httpJson(base, 'POST', '/api/register', { username: nameB, password: PASSWORD }, undefined, 201);
  check(sa.user.username === nameA && sa.accessToken, `register A: ${show(sa)}`);
  check(sb.user.username === nameB && sb.accessToken, `register B: ${show(sb)}`);
  const idA = sa.user.id;
  const idB = sb.user.id;
  step('register');

  const conv = await httpJson(base, 'POST', '/api/conversations', { kind: 'direct', with: nameB }, sa.accessToken, 201);
  check(conv.kind === 'direct', `create direct: ${show(conv)}`);
  const members = conv.members.map((m) => m.id).sort((x, y) => x - y);
  check(isDeepStrictEqual(members, [idA, idB].sort((x, y) => x - y)), `create direct: members ${show(conv.members)}`);
  check(conv.name === nameB, `create direct: A should see it named ${nameB}: ${conv.name}`);
  const cid = conv.id;
  step('direct chat');

  const a = await openSocket('A', base, sa, cid);
  let b = await openSocket('B', base, sb, cid);
  step('ready');

  // -- send, ack, new_message, duplicate --------------------------------------------
  const localId = `js-${tag}-1`;
  const send = { type: 'send', conversation: cid, localId, body: 'hello from node' };
  a.send(send);
  const ack = await a.expect('ack', ofType('ack', { localId }));
  check(ack.conversation === cid && Number.isInteger(ack.seq), `ack: ${show(ack)}`);
  check(!ack.duplicate, `first ack says duplicate: ${show(ack)}`);
  const seq1 = ack.seq;
  const msg = await b.expect('new_message', ofType('new_message', { conversation: cid }));
  sameMessage(msg, ack, "B's new_message vs A's ack");
  check(
    msg.sender === idA && msg.senderName === nameA && msg.kind === 'text' && msg.body === 'hello from node',
    `B's new_message: ${show(msg)}`,
  );
  step('send');

  a.send(send);
  const dup = await a.expect('duplicate ack', ofType('ack', { localId }));
  check(dup.duplicate === true, `retried send: no duplicate: true: ${show(dup)}`);
  check(dup.id === ack.id && dup.seq === seq1, `retried send: ${show(dup)} vs ${show(ack)}`);
  step('duplicate send');

  // -- receipts ----------------------------------------------------------------------
  b.send({ type: 'received', conversation: cid, seq: seq1 });
  b.send({ type: 'read', conversation: cid, seq: seq1 });
  const receipt = await a.expect(`receipt of B read ${seq1}`, (m) =>
    ofType('receipt', { conversation: cid, user: idB })(m) && m.read === seq1);
  check(receipt.delivered === seq1, `receipt: delivered ${show(receipt)}`);
  step('receipt');

  // -- typing, user_list, heartbeat -------------------------------------------------
  a.send({ type: 'typing', conversation: cid, state: 'start' });
  await b.expect('typing start', ofType('typing', { conversation: cid, user: idA, state: 'start' }));
  step('typing');

  b.send({ type: 'user_list', conversation: cid, ref: 'who' });
  const ul = await b.expect('user_list', ofType('user_list', { conversation: cid, ref: 'who' }));
  const online = Object.fromEntries(ul.members.map((m) => [m.id, m.online]));
  check(isDeepStrictEqual(online, { [idA]: true, [idB]: true }), `user_list: ${show(ul.members)}`);
  step('user_list');

  a.ws.send('ping');
  await a.expect('pong', ofType('<pong>'));
  step('heartbeat');

  // -- file upload over the socket ------------------------------------------------
  const data = fileBytes(FILE_SIZE);
  const digest = createHash('sha256').update(data).digest('hex');
  const uploadId = `js-${tag}-file`;
  a.send({
    type: 'file_start', conversation: cid, uploadId, name: 'notes.bin',
    size: FILE_SIZE, mime: 'application/x-interop', sha256: digest,
  });
  const ready = await a.expect('file_ready', ofType('file_ready', { uploadId }));
  check(ready.offset === 0 && ready.ref === uploadId, `file_ready: ${show(ready)}`);
  const fileId = ready.fileId;
  const chunk = ready.chunkSize;
  check(Number.isInteger(chunk) && chunk > 0, `file_ready chunkSize: ${show(ready)}`);
  let chunks = 0;
  for (let offset = 0; offset < FILE_SIZE; offset += chunk) {
    const head = Buffer.alloc(16);
    head.writeBigUInt64BE(BigInt(fileId), 0);
    head.writeBigUInt64BE(BigInt(offset), 8);
    a.ws.send(Buffer.concat([head, data.subarray(offset, offset + chunk)]), { binary: true });
    chunks++;
  }
  a.send({ type: 'file_end', fileId });
  const fack = await a.expect('ack of the file', ofType('ack', { localId: uploadId }));
  check(fack.conversation === cid && fack.seq === seq1 + 1, `file ack: ${show(fack)} (text was ${seq1})`);

  // Sending a file stops typing: B hears the stop before the file message.
  let fmsg = null;
  let stopped = false;
  while (fmsg === null) {
    const m = await b.expect('typing stop / file message', (x) => x.type === 'typing' || x.type === 'new_message');
    if (m.type === 'typing') {
      check(m.user === idA && m.state === 'stop', `typing after the upload: ${show(m)}`);
      stopped = true;
    } else {
      fmsg = m;
    }
  }
  check(stopped, 'B got the file message without the typing stop before it');
  sameMessage(fmsg, fack, "B's file new_message vs A's ack");
  check(fmsg.kind === 'file' && fmsg.body === 'notes.bin', `file new_message: ${show(fmsg)}`);
  const wantFile = { id: fileId, name: 'notes.bin', size: FILE_SIZE, mime: 'application/x-interop', sha256: digest };
  check(isDeepStrictEqual(fmsg.file, wantFile), `file object: ${show(fmsg.file)} !== ${show(wantFile)}`);
  step(`upload (${chunks} chunks of ${chunk})`);

  // -- download -----------------------------------------------------------------------
  let res = await http(base, 'GET', `/api/files/${fileId}`, { token: sb.accessToken });
  check(res.status === 200, `download: ${res.status} ${res.bytes.subarray(0, 200).toString()}`);
  check(res.bytes.equals(data), `download: ${res.bytes.length} bytes, sha256 ${createHash('sha256').update(res.bytes).digest('hex')}`);
  const hd = (name) => res.headers.get(name);
  check(hd('content-length') === String(FILE_SIZE), `download Content-Length ${hd('content-length')}`);
  check(hd('content-type') === 'application/x-interop', `download Content-Type ${hd('content-type')}`);
  check(hd('accept-ranges') === 'bytes', `download Accept-Ranges ${hd('accept-ranges')}`);
  check(hd('x-content-type-options') === 'nosniff', 'download: no X-Content-Type-Options: nosniff');
  check((hd('content-disposition') ?? '').includes('filename="notes.bin"'), `Content-Disposition ${hd('content-disposition')}`);
  res = await http(base, 'GET', `/api/files/${fileId}`, { token: sb.accessToken, headers: { Range: 'bytes=100-199' } });
  check(res.status === 206, `range download: ${res.status} ${res.bytes.subarray(0, 200).toString()}`);
  check(res.bytes.equals(data.subarray(100, 200)), `range download: wrong bytes (${res.bytes.length})`);
  check(hd('content-range') === `bytes 100-199/${FILE_SIZE}`, `range download Content-Range ${hd('content-range')}`);
  step('download');

  // -- a message posted over HTTP arrives live --------------------------------------
  const post = { conversation: cid, localId: `js-${tag}-http`, body: 'posted over http' };
  const hack = await httpJson(base, 'POST', '/api/messages', post, sa.accessToken, 201);
  check(hack.type === 'ack' && hack.seq === fack.seq + 1, `POST /api/messages: ${show(hack)}`);
  const hmsg = await b.expect('the posted message', ofType('new_message', { conversation: cid, seq: hack.seq }));
  sameMessage(hmsg, hack, "B's new_message vs the HTTP ack");
  check(hmsg.body === 'posted over http', `posted message: ${show(hmsg)}`);
  const own = await a.expect('the posted message on A', ofType('new_message', { conversation: cid, seq: hack.seq }));
  sameMessage(own, hack, "A's new_message vs the HTTP ack");
  const again = await httpJson(base, 'POST', '/api/messages', post, sa.accessToken, 200);
  check(again.duplicate === true && again.id === hack.id, `POST retry: ${show(again)}`);
  step('post over http');

  // -- reconnect and sync -------------------------------------------------------------
  await b.close();
  b = await openSocket('B again', base, sb, cid);
  b.send({ type: 'sync', cursors: { [cid]: seq1 }, ref: 's1' });
  const replayed = [];
  let synced;
  for (;;) {
    const m = await b.expect('sync_batch or synced', (x) => ['sync_batch', 'synced', 'new_message'].includes(x.type));
    check(m.type !== 'new_message', `a new_message during the sync with nothing new sent: ${show(m)}`);
    if (m.type === 'synced') {
      synced = m;
      break;
    }
    check(m.conversation === cid, `sync_batch for another conversation: ${show(m)}`);
    replayed.push(...m.messages);
  }
  check(synced.ref === 's1', `synced without ref s1: ${show(synced)}`);
  check(isDeepStrictEqual(synced.cursors, { [cid]: hack.seq }), `synced cursors ${show(synced.cursors)}`);
  const got = replayed.map((r) => [r.seq, r.id]);
  const want = [[fack.seq, fack.id], [hack.seq, hack.id]];
  check(isDeepStrictEqual(got, want), `sync from ${seq1} replayed [seq, id] ${show(got)}, expected ${show(want)}`);
  check(isDeepStrictEqual(replayed[0].file, wantFile), `replayed file message: ${show(replayed[0])}`);
  step('sync');

  await a.close();
  await b.close();
  step('close 1000');
}

const base = process.argv[2];
if (!base || process.argv.length !== 3) {
  console.error('usage: node chat_node.mjs http://HOST:PORT');
  process.exit(2);
}
const giveUp = setTimeout(() => {
  console.error(`FAIL: gave up after ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
try {
  await run(base.replace(/\/+$/, ''));
} catch (err) {
  console.error(err instanceof Fail ? `FAIL: ${err.message}` : `FAIL: ${err.stack}`);
  process.exit(1);
}
clearTimeout(giveUp);
console.log('ok');
