// The modules together, wired the way the page will wire them, over a fake socket: the
// scenarios of issue 10 that must never lose or double a message.
import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { Connection } from "../js/connection.js";
import { Backoff } from "../js/backoff.js";
import { Outbox } from "../js/outbox.js";
import { Timelines } from "../js/timeline.js";
import { Cursors } from "../js/cursors.js";
import { MemoryStorage } from "../js/storage.js";
import { FakeTime, FakeSocket } from "../testing/fakes.js";

beforeEach(() => FakeSocket.reset());

const ME = 1;
const conversation = { id: 3, kind: "direct", members: [{ id: 1 }, { id: 2 }], lastSeq: 0, unread: 0, markers: [] };

/** One page load: the modules on a shared storage, routed by message type. */
function page(storage, time, epoch = "e1") {
  let n = 0;
  const outbox = new Outbox({ storage, userId: ME, timers: time.timers, now: time.now, newId: () => `p${storage.loads}-${++n}` });
  const timelines = new Timelines(ME);
  const cursors = new Cursors({ storage, userId: ME });
  let send = null;
  const conn = new Connection({
    url: "ws://chat.test/ws",
    WebSocket: FakeSocket,
    timers: time.timers,
    now: time.now,
    backoff: new Backoff({ random: () => 0.5 }),
    onOpen: (s) => {
      send = (msg) => s(JSON.stringify(msg));
      send({ type: "auth", token: "t" });
    },
    onClose: () => outbox.detach(),
    onMessage: (text) => {
      const msg = JSON.parse(text);
      switch (msg.type) {
        case "ready":
          if (cursors.adoptEpoch(msg.epoch)) timelines.clear();
          send(cursors.syncRequest(msg.conversations.map((c) => c.id), "s"));
          outbox.attach(send);
          break;
        case "ack":
          timelines.get(msg.conversation).applyAck(msg);
          outbox.handleAck(msg);
          cursors.observe(msg.conversation, msg.seq);
          break;
        case "new_message":
          receive(msg);
          break;
        case "sync_batch":
          for (const m of msg.messages) receive(m);
          break;
        case "synced":
          cursors.applySynced(msg.cursors);
          break;
      }
    },
  });
  function receive(m) {
    timelines.get(m.conversation).add(m);
    outbox.handleMessage(m, ME);
    cursors.observe(m.conversation, m.seq);
  }
  storage.loads = (storage.loads ?? 0) + 1;
  // On load, what the outbox holds is shown at once as "sending".
  for (const e of outbox.entries()) timelines.get(e.conversation).addPending(e);
  return {
    conn,
    outbox,
    timelines,
    cursors,
    write(body) {
      const entry = outbox.add(3, body);
      timelines.get(3).addPending(entry);
    },
    bodies: () => timelines.get(3).messages().map((m) => `${m.body}${m.pending ? " (sending)" : ""}`),
  };
}

/** The server's side: a database of committed messages, idempotent by localId. */
function server(epoch = "e1") {
  const messages = [];
  return {
    messages,
    /** Answers what a socket sent since the last call. */
    serve(socket, { dropAcks = false } = {}) {
      const handled = (socket.handled ??= 0);
      const frames = socket.json().slice(handled);
      socket.handled = handled + frames.length;
      for (const f of frames) {
        if (f.type === "auth") socket.serverSend({ type: "ready", user: { id: ME }, epoch, conversations: [conversation] });
        if (f.type === "sync") {
          const after = f.cursors[3] ?? 0;
          socket.serverSend({ type: "sync_batch", conversation: 3, messages: messages.filter((m) => m.seq > after) });
          socket.serverSend({ type: "synced", cursors: { 3: messages.length }, ref: f.ref });
        }
        if (f.type === "send") {
          let m = messages.find((x) => x.localId === f.localId);
          const duplicate = Boolean(m);
          if (!m) {
            m = { conversation: 3, id: 100 + messages.length + 1, seq: messages.length + 1, ts: 1, sender: ME, kind: "text", body: f.body, localId: f.localId };
            messages.push(m);
          }
          if (!dropAcks) socket.serverSend({ type: "ack", conversation: 3, localId: f.localId, id: m.id, seq: m.seq, ts: m.ts, ...(duplicate ? { duplicate } : {}) });
        }
      }
    },
  };
}

test("written offline, sent on connect: each message once, in order, outbox emptied", () => {
  const time = new FakeTime();
  const storage = new MemoryStorage();
  const db = server();
  const p = page(storage, time);
  p.write("one");
  p.write("two");
  p.write("three");
  assert.deepEqual(p.bodies(), ["one (sending)", "two (sending)", "three (sending)"]);
  p.conn.start();
  FakeSocket.last.serverOpen();
  db.serve(FakeSocket.last); // auth → ready → sync + sends
  db.serve(FakeSocket.last); // sync + sends → batch, synced, acks
  assert.deepEqual(db.messages.map((m) => m.body), ["one", "two", "three"]);
  assert.deepEqual(p.bodies(), ["one", "two", "three"]);
  assert.deepEqual(p.outbox.entries(), []);
  assert.equal(p.cursors.get(3), 3);
});

test("reload with unacknowledged messages (acks lost): re-sent, committed once, shown once", () => {
  const time = new FakeTime();
  const storage = new MemoryStorage();
  const db = server();
  const first = page(storage, time);
  first.conn.start();
  FakeSocket.last.serverOpen();
  db.serve(FakeSocket.last);
  db.serve(FakeSocket.last);
  first.write("a");
  first.write("b");
  // The server commits both but the acks never arrive; the tab reloads.
  db.serve(FakeSocket.last, { dropAcks: true });
  assert.deepEqual(first.bodies(), ["a (sending)", "b (sending)"]);
  first.conn.stop();

  const second = page(storage, time);
  assert.deepEqual(second.bodies(), ["a (sending)", "b (sending)"], "the outbox survived the reload");
  second.conn.start();
  FakeSocket.last.serverOpen();
  db.serve(FakeSocket.last);
  db.serve(FakeSocket.last);
  assert.equal(db.messages.length, 2, "the re-sends were not stored twice");
  assert.deepEqual(second.bodies(), ["a", "b"]);
  assert.deepEqual(second.outbox.entries(), []);
});

test("after a dropped connection the sync resumes from the cursor, without duplicates", () => {
  const time = new FakeTime();
  const storage = new MemoryStorage();
  const db = server();
  const p = page(storage, time);
  p.conn.start();
  FakeSocket.last.serverOpen();
  db.serve(FakeSocket.last);
  p.write("before");
  db.serve(FakeSocket.last);
  FakeSocket.last.serverClose(1006);
  // Meanwhile the other person writes.
  db.messages.push({ conversation: 3, id: 900, seq: 2, ts: 2, sender: 2, kind: "text", body: "while away" });
  p.write("queued offline");
  time.advance(500);
  FakeSocket.last.serverOpen();
  db.serve(FakeSocket.last);
  assert.deepEqual(FakeSocket.last.json()[1].cursors, { 3: 1 });
  db.serve(FakeSocket.last);
  assert.deepEqual(p.bodies(), ["before", "while away", "queued offline"]);
  assert.equal(p.cursors.get(3), 3);
});

test("an epoch change drops the cursors and the cached timeline", () => {
  const time = new FakeTime();
  const storage = new MemoryStorage();
  const db = server("e1");
  const p = page(storage, time);
  p.conn.start();
  FakeSocket.last.serverOpen();
  db.serve(FakeSocket.last);
  p.write("old world");
  db.serve(FakeSocket.last);
  assert.equal(p.cursors.get(3), 1);
  FakeSocket.last.serverClose(1001);
  // The server comes back on a fresh database.
  const fresh = server("e2");
  time.advance(500);
  FakeSocket.last.serverOpen();
  fresh.serve(FakeSocket.last);
  assert.deepEqual(FakeSocket.last.json()[1].cursors, {}, "no stale cursor sent");
  assert.deepEqual(p.bodies(), []);
});
