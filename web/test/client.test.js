// The page's client (web/js/app/client.js) over a fake socket: what it sends and when, and
// what it holds for the view.
import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { ChatClient } from "../js/app/client.js";
import { MemoryStorage } from "../js/storage.js";
import { FakeTime, FakeSocket } from "../testing/fakes.js";

beforeEach(() => FakeSocket.reset());

const settle = async () => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

const ME = 1;
const direct = { id: 3, kind: "direct", name: "bob", members: [{ id: 1, username: "alice" }, { id: 2, username: "bob" }], lastSeq: 1, unread: 1, markers: [], lastMessage: { conversation: 3, id: 1, seq: 1, ts: 5, sender: 2, kind: "system", body: "bob started a chat" } };

function fakeSession({ renew = async () => true } = {}) {
  let n = 1;
  const s = {
    user: { id: ME, username: "alice" },
    data: { accessToken: "t1" },
    accessToken: async () => s.data.accessToken,
    renew: async () => {
      const ok = await renew();
      if (ok) s.data = { accessToken: `t${++n}` };
      return ok;
    },
  };
  return s;
}

function setup({ storage = new MemoryStorage(), session = fakeSession() } = {}) {
  const time = new FakeTime();
  let id = 0;
  const client = new ChatClient({ session, storage, WebSocket: FakeSocket, url: "ws://chat.test/ws", timers: time.timers, now: time.now, random: () => 0.5, newId: () => `m-${++id}` });
  const events = [];
  client.on((kind, detail) => events.push([kind, detail]));
  return { time, client, events, storage, session };
}

async function connect(client, conversations = [direct], epoch = "e1") {
  client.start();
  FakeSocket.last.serverOpen();
  await settle();
  FakeSocket.last.serverSend({ type: "ready", user: { id: ME, username: "alice" }, epoch, conversations });
  return FakeSocket.last;
}

const sentTypes = (socket) => socket.json().map((m) => m.type);

test("authenticates first, then syncs and sends what the outbox holds, only after ready", async () => {
  const storage = new MemoryStorage();
  const first = setup({ storage });
  first.client.send(3, "written before any connection");
  assert.deepEqual(first.client.timelines.get(3).messages().map((m) => m.pending), [true]);
  first.client.stop();

  const { client } = setup({ storage });
  assert.equal(client.timelines.get(3).messages()[0].body, "written before any connection", "shown after the reload");
  client.start();
  FakeSocket.last.serverOpen();
  await settle();
  assert.deepEqual(sentTypes(FakeSocket.last), ["auth"], "nothing before auth");
  FakeSocket.last.serverSend({ type: "ready", user: { id: ME, username: "alice" }, epoch: "e1", conversations: [direct] });
  assert.deepEqual(sentTypes(FakeSocket.last), ["auth", "sync", "send"]);
  assert.deepEqual(FakeSocket.last.json()[1], { type: "sync", cursors: {}, ref: "sync" });
});

test("messages from a sync and live: one timeline by seq, the list's last message, unread, received", async () => {
  const { client, time } = setup();
  const socket = await connect(client);
  socket.serverSend({ type: "new_message", conversation: 3, id: 12, seq: 3, ts: 30, sender: 2, senderName: "bob", kind: "text", body: "live", localId: "b-2" });
  socket.serverSend({ type: "sync_batch", conversation: 3, messages: [{ conversation: 3, id: 11, seq: 2, ts: 20, sender: 2, kind: "text", body: "missed", localId: "b-1" }, { conversation: 3, id: 12, seq: 3, ts: 30, sender: 2, kind: "text", body: "live", localId: "b-2" }] });
  socket.serverSend({ type: "synced", cursors: { 3: 3 }, ref: "sync" });
  assert.deepEqual(client.timelines.get(3).messages().map((m) => m.body), ["missed", "live"]);
  assert.equal(client.conversations.get(3).lastMessage.body, "live");
  assert.equal(client.unread(3), 3, "the system message, and the two");
  assert.equal(client.totalUnread(), 3);
  time.advance(300);
  assert.deepEqual(socket.json().at(-1), { type: "received", conversation: 3, seq: 3 });
});

test("the open conversation, scrolled to the bottom, is read: unread drops and a read goes out", async () => {
  const { client, time } = setup();
  const socket = await connect(client);
  socket.serverSend({ type: "new_message", conversation: 3, id: 12, seq: 2, ts: 30, sender: 2, kind: "text", body: "hi" });
  client.setOpen(3);
  assert.deepEqual(socket.json().slice(-2).map((m) => m.type), ["user_list", "history"], "presence of its members; its newest page");
  client.setReading(true);
  assert.equal(client.unread(3), 0);
  time.advance(300);
  assert.deepEqual(socket.json().at(-1), { type: "read", conversation: 3, seq: 2 });
  client.setReading(false);
  socket.serverSend({ type: "new_message", conversation: 3, id: 13, seq: 3, ts: 31, sender: 2, kind: "text", body: "later" });
  assert.equal(client.unread(3), 1, "not read while scrolled away or hidden");
});

test("ack → sent; receipts → delivered → read; a final error → failed, and retry sends it again", async () => {
  const { client } = setup();
  const socket = await connect(client);
  const entry = client.send(3, "hello");
  const mine = () => client.timelines.get(3).messages().find((m) => m.localId === entry.localId);
  assert.equal(client.ticks(mine()).state, "sending");
  socket.serverSend({ type: "ack", conversation: 3, localId: entry.localId, id: 20, seq: 2, ts: 40 });
  assert.equal(client.ticks(mine()).state, "sent");
  assert.equal(client.conversations.get(3).lastMessage.body, "hello");
  socket.serverSend({ type: "receipt", conversation: 3, user: 2, delivered: 2, read: 0 });
  assert.equal(client.ticks(mine()).state, "delivered");
  socket.serverSend({ type: "receipt", conversation: 3, user: 2, delivered: 2, read: 2 });
  assert.equal(client.ticks(mine()).state, "read");

  const bad = client.send(3, "x".repeat(10));
  socket.serverSend({ type: "error", code: "body_too_long", message: "too long", ref: bad.localId });
  const failed = client.timelines.get(3).messages().find((m) => m.localId === bad.localId);
  assert.equal(client.ticks(failed).state, "failed");
  const before = socket.json().length;
  client.retry(3, bad.localId);
  assert.equal(socket.json()[before].localId, bad.localId, "the same localId again");
  assert.equal(client.ticks(client.timelines.get(3).messages().find((m) => m.localId === bad.localId)).state, "sending");
});

test("history pages go in front; one request at a time per conversation", async () => {
  const { client } = setup();
  const socket = await connect(client);
  socket.serverSend({ type: "sync_batch", conversation: 3, messages: [{ conversation: 3, id: 60, seq: 60, ts: 1, sender: 2, kind: "text", body: "60" }] });
  assert.equal(client.loadOlder(3), true);
  assert.equal(client.loadOlder(3), false, "in flight");
  const request = socket.json().at(-1);
  assert.deepEqual({ ...request, ref: undefined }, { type: "history", conversation: 3, limit: 50, before: 60, ref: undefined });
  const page = Array.from({ length: 50 }, (_, i) => ({ conversation: 3, id: 10 + i, seq: 10 + i, ts: 1, sender: 2, kind: "text", body: String(10 + i) }));
  socket.serverSend({ type: "history", conversation: 3, messages: page, hasMore: true, ref: request.ref });
  assert.equal(client.timelines.get(3).messages().length, 51);
  assert.equal(client.loadingOlder(3), false);
  assert.equal(client.loadOlder(3), true);
});

test("conversations pushed and removed; the open one closes when left", async () => {
  const { client, events } = setup();
  const socket = await connect(client);
  socket.serverSend({ type: "conversation", conversation: { id: 7, kind: "group", name: "team", owner: 2, members: [{ id: 1, username: "alice" }, { id: 2, username: "bob" }], lastSeq: 1 } });
  assert.deepEqual(client.conversationList().map((c) => c.id), [3, 7]);
  socket.serverSend({ type: "new_message", conversation: 7, id: 70, seq: 2, ts: 100, sender: 2, kind: "text", body: "hey team" });
  assert.deepEqual(client.conversationList().map((c) => c.id), [7, 3], "newest activity first");
  client.setOpen(7);
  socket.serverSend({ type: "conversation_removed", conversation: 7 });
  assert.equal(client.open, null);
  assert.deepEqual(client.conversationList().map((c) => c.id), [3]);
  assert.ok(events.some(([k, d]) => k === "removed" && d === 7));
});

test("typing from others shows and lapses; presence from pushes", async () => {
  const { client, time } = setup();
  const socket = await connect(client);
  socket.serverSend({ type: "typing", conversation: 3, user: 2, state: "start" });
  assert.deepEqual(client.typingIn.typers(3), [2]);
  time.advance(6000);
  assert.deepEqual(client.typingIn.typers(3), []);
  socket.serverSend({ type: "presence", user: 2, online: true });
  assert.equal(client.presence.get(2).online, true);
  client.typing(3, "h");
  assert.deepEqual(socket.json().at(-1), { type: "typing", conversation: 3, state: "start" });
  client.typing(3, "");
  assert.deepEqual(socket.json().at(-1), { type: "typing", conversation: 3, state: "stop" });
});

test("token expired on an open socket → renewed and authenticated again on the same socket", async () => {
  const { client } = setup();
  const socket = await connect(client);
  socket.serverSend({ type: "error", code: "token_expired", message: "expired" });
  await settle();
  assert.deepEqual(socket.json().at(-1), { type: "auth", token: "t2" });
  const before = socket.json().length;
  socket.serverSend({ type: "ready", user: { id: ME, username: "alice" }, epoch: "e1", conversations: [direct] });
  assert.equal(socket.json().length, before, "no second sync on the same socket");
});

test("close 4001 and a refused refresh → session_gone, and no reconnect", async () => {
  const { client, events, time } = setup({ session: fakeSession({ renew: async () => false }) });
  const socket = await connect(client);
  socket.serverClose(4001, "token expired");
  await settle();
  assert.ok(events.some(([k]) => k === "session_gone"));
  const sockets = FakeSocket.all.length;
  time.advance(60_000);
  assert.equal(FakeSocket.all.length, sockets);
});

test("an epoch change drops the cached timelines but keeps the outbox", async () => {
  const storage = new MemoryStorage();
  const { client } = setup({ storage });
  const socket = await connect(client);
  socket.serverSend({ type: "new_message", conversation: 3, id: 12, seq: 2, ts: 30, sender: 2, kind: "text", body: "old world" });
  client.send(3, "unsent");
  socket.serverClose(1001);
  await settle();
  client.connection.hint("online");
  FakeSocket.last.serverOpen();
  await settle();
  FakeSocket.last.serverSend({ type: "ready", user: { id: ME, username: "alice" }, epoch: "e2", conversations: [direct] });
  assert.deepEqual(client.timelines.get(3).messages().map((m) => m.body), ["unsent"]);
  assert.deepEqual(FakeSocket.last.json()[1].cursors, {});
});

test("the markers are read once more shortly after ready (a receipt sent while connecting can miss the socket)", async () => {
  const { client, time } = setup();
  const socket = await connect(client);
  const entry = client.send(3, "hello");
  socket.serverSend({ type: "ack", conversation: 3, localId: entry.localId, id: 20, seq: 2, ts: 40 });
  const mine = () => client.timelines.get(3).messages().find((m) => m.localId === entry.localId);
  assert.equal(client.ticks(mine()).state, "sent");
  time.advance(2000);
  const request = socket.json().at(-1);
  assert.equal(request.type, "conversations");
  socket.serverSend({ type: "conversations", ref: request.ref, conversations: [{ ...direct, lastSeq: 2, unread: 0, markers: [{ user: 2, delivered: 2, read: 2 }] }] });
  assert.equal(client.ticks(mine()).state, "read");
});
