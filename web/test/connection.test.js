import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { Connection, bannerText, CLOSE_AUTH } from "../js/connection.js";
import { Backoff } from "../js/backoff.js";
import { FakeTime, FakeSocket } from "../testing/fakes.js";

beforeEach(() => FakeSocket.reset());

/** A connection on fake time; `random` fixes the jitter so delays are predictable. */
function setup(extra = {}) {
  const time = new FakeTime();
  const states = [];
  const messages = [];
  const opens = [];
  const conn = new Connection({
    url: "ws://chat.test/ws",
    WebSocket: FakeSocket,
    timers: time.timers,
    now: time.now,
    backoff: new Backoff({ random: () => 0.5 }),
    onStateChange: (s) => states.push(s.phase),
    onMessage: (m) => messages.push(m),
    onOpen: (send) => opens.push(send),
    ...extra,
  });
  return { time, conn, states, messages, opens };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("connects, goes online and hands the page a send function", () => {
  const { conn, opens } = setup();
  conn.start();
  assert.equal(conn.state.phase, "connecting");
  assert.equal(FakeSocket.all.length, 1);
  FakeSocket.last.serverOpen();
  assert.equal(conn.state.phase, "online");
  assert.equal(opens.length, 1);
  assert.equal(opens[0](JSON.stringify({ type: "auth", token: "t" })), true);
  assert.deepEqual(FakeSocket.last.json(), [{ type: "auth", token: "t" }]);
});

test("sends a text ping every 10 s and keeps the socket while pongs come back", () => {
  const { time, conn, messages } = setup();
  conn.start();
  const socket = FakeSocket.last;
  socket.serverOpen();
  time.advance(9_999);
  assert.equal(socket.pings(), 0);
  for (let i = 1; i <= 6; i++) {
    time.advance(i === 1 ? 1 : 10_000);
    assert.equal(socket.pings(), i);
    socket.serverSend("pong");
  }
  assert.equal(conn.state.phase, "online");
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(messages, [], "pong is not passed to the page");
});

test("no pong within 20 s of a ping → the socket is dropped and a reconnect scheduled", () => {
  const closes = [];
  const { time, conn } = setup({ onClose: (code) => closes.push(code) });
  conn.start();
  const socket = FakeSocket.last;
  socket.serverOpen();
  time.advance(10_000); // first ping, unanswered
  time.advance(19_999);
  assert.equal(conn.state.phase, "online", "still inside the 20 s window");
  time.advance(1);
  assert.equal(conn.state.phase, "reconnecting");
  assert.ok(socket.closedByClient, "the dead socket is closed");
  assert.deepEqual(closes, [1006]);
  // Jitter 0.5 of the first 1 s ceiling.
  assert.equal(conn.state.retryAt, time.now() + 500);
  time.advance(500);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(conn.state.phase, "connecting");
  // A late close event from the abandoned socket changes nothing.
  socket.serverClose(1006);
  assert.equal(conn.state.phase, "connecting");
  assert.equal(FakeSocket.all.length, 2);
});

test("any message counts as a sign of life, not only pong", () => {
  const { time, conn, messages } = setup();
  conn.start();
  const socket = FakeSocket.last;
  socket.serverOpen();
  for (let i = 0; i < 5; i++) {
    time.advance(10_000);
    socket.serverSend({ type: "typing", conversation: 1, user: 2, state: "start" });
  }
  assert.equal(conn.state.phase, "online");
  assert.equal(messages.length, 5);
});

test("reconnect delays follow the backoff, one attempt at a time", () => {
  const { time, conn } = setup();
  conn.start();
  const delays = [];
  for (let i = 0; i < 7; i++) {
    FakeSocket.last.serverClose(1006);
    delays.push(conn.state.retryAt - time.now());
    time.advance(conn.state.retryAt - time.now());
    assert.equal(FakeSocket.all.length, i + 2);
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
});

test("the backoff starts over only after the connection stayed up 10 s", () => {
  const { time, conn } = setup();
  conn.start();
  FakeSocket.last.serverClose(1006);
  time.advance(500);
  FakeSocket.last.serverClose(1006);
  time.advance(1000);
  // Opens, but drops after 5 s: not stable, the backoff keeps growing.
  FakeSocket.last.serverOpen();
  time.advance(5_000);
  FakeSocket.last.serverClose(1006);
  assert.equal(conn.state.retryAt - time.now(), 2000);
  time.advance(2000);
  // Stays up 10 s: the next failure waits the base delay again.
  FakeSocket.last.serverOpen();
  time.advance(10_000);
  FakeSocket.last.serverSend("pong");
  FakeSocket.last.serverClose(1001);
  assert.equal(conn.state.retryAt - time.now(), 500);
});

test("online and visible hints reconnect at once instead of waiting out the backoff", () => {
  const { time, conn } = setup({ connectTimeoutMs: 120_000 });
  conn.start();
  for (let i = 0; i < 5; i++) {
    FakeSocket.last.serverClose(1006);
    time.advance(conn.state.retryAt - time.now());
  }
  FakeSocket.last.serverClose(1006);
  assert.equal(conn.state.phase, "reconnecting");
  const before = FakeSocket.all.length;
  conn.hint("online");
  assert.equal(FakeSocket.all.length, before + 1);
  assert.equal(conn.state.phase, "connecting");
  // The cancelled backoff timer must not start a second attempt later.
  time.advance(60_000);
  assert.equal(FakeSocket.all.length, before + 1);
  // Hints during an attempt do not open another socket.
  conn.hint("visible");
  conn.hint("online");
  assert.equal(FakeSocket.all.length, before + 1);
});

test("offline hint shows offline while waiting; visible while online probes with a ping", () => {
  const { time, conn } = setup();
  conn.start();
  FakeSocket.last.serverClose(1006);
  conn.hint("offline");
  assert.equal(conn.state.phase, "offline");
  assert.equal(bannerText(conn.state, time.now()), "offline, retrying in 1 s");
  time.advance(500);
  FakeSocket.last.serverOpen();
  assert.equal(conn.state.phase, "online");
  conn.hint("visible");
  assert.equal(FakeSocket.last.pings(), 1, "an immediate probe");
  time.advance(20_000);
  assert.equal(conn.state.phase, "offline", "the probe went unanswered: reconnect (browser still says offline)");
});

test("offline hint while online gives the socket up at once (the banner never says online offline)", () => {
  const { time, conn } = setup();
  conn.start();
  FakeSocket.last.serverOpen();
  const held = FakeSocket.last;
  conn.hint("offline");
  assert.equal(conn.state.phase, "offline");
  assert.equal(bannerText(conn.state, time.now()), "offline, retrying in 30 s", "no attempts while the browser says offline");
  assert.ok(held.closedByClient, "the stalled socket was closed");
  assert.equal(conn.send("x"), false, "nothing is written into it any more");
  conn.hint("online");
  assert.equal(conn.state.phase, "connecting", "back online: reconnect at once");
  assert.notEqual(FakeSocket.last, held);
  FakeSocket.last.serverOpen();
  assert.equal(conn.state.phase, "online");
  time.advance(1);
});

test("an attempt that never opens is given up after the connect timeout", () => {
  const { time, conn } = setup({ connectTimeoutMs: 5_000 });
  conn.start();
  time.advance(4_999);
  assert.equal(conn.state.phase, "connecting");
  time.advance(1);
  assert.equal(conn.state.phase, "reconnecting");
  assert.ok(FakeSocket.all[0].closedByClient);
});

test("close 4001 without a way to renew → session gone, no reconnect loop", () => {
  const { time, conn } = setup();
  conn.start();
  FakeSocket.last.serverOpen();
  FakeSocket.last.serverClose(CLOSE_AUTH, "token expired");
  assert.equal(conn.state.phase, "session_gone");
  assert.equal(conn.state.reason, "token expired");
  assert.equal(bannerText(conn.state, time.now()), "signed out");
  time.advance(10 * 60_000);
  conn.hint("online");
  assert.equal(FakeSocket.all.length, 1);
});

test("close 4001 → the session is renewed once and the connection comes back", async () => {
  const reasons = [];
  const { conn } = setup({
    renewSession: async (reason) => {
      reasons.push(reason);
      return true;
    },
  });
  conn.start();
  FakeSocket.last.serverOpen();
  FakeSocket.last.serverSend({ type: "ready" });
  FakeSocket.last.serverClose(CLOSE_AUTH, "token expired");
  await settle();
  assert.deepEqual(reasons, ["token expired"]);
  assert.equal(FakeSocket.all.length, 2, "reconnected at once with the renewed session");
  // The renewed token is refused as well, before any frame: the session is really gone.
  FakeSocket.last.serverOpen();
  FakeSocket.last.serverClose(CLOSE_AUTH, "invalid token");
  await settle();
  assert.equal(reasons.length, 1, "no second renewal");
  assert.equal(conn.state.phase, "session_gone");
  assert.equal(FakeSocket.all.length, 2);
});

test("close 4001 and a refused refresh → session gone (the login screen)", async () => {
  const { conn } = setup({ renewSession: async () => false });
  conn.start();
  FakeSocket.last.serverClose(CLOSE_AUTH, "invalid token");
  await settle();
  assert.equal(conn.state.phase, "session_gone");
  assert.equal(FakeSocket.all.length, 1);
});

test("close 4001 while the refresh itself fails (network) → retry later, not logout", async () => {
  const { time, conn } = setup({ renewSession: async () => Promise.reject(new Error("fetch failed")) });
  conn.start();
  FakeSocket.last.serverClose(CLOSE_AUTH, "token expired");
  await settle();
  assert.equal(conn.state.phase, "reconnecting");
  time.advance(500);
  assert.equal(FakeSocket.all.length, 2);
});

test("stop closes the socket and nothing reconnects", () => {
  const { time, conn } = setup();
  conn.start();
  const socket = FakeSocket.last;
  socket.serverOpen();
  conn.stop();
  assert.deepEqual(socket.closedByClient, { code: 1000, reason: "bye" });
  assert.equal(conn.state.phase, "stopped");
  socket.serverClose(1000);
  time.advance(120_000);
  assert.equal(FakeSocket.all.length, 1);
  assert.equal(conn.send("x"), false);
});

test("banner text counts down the seconds to the next attempt", () => {
  const state = { phase: "reconnecting", retryAt: 10_000, reason: null };
  assert.equal(bannerText(state, 0), "reconnecting in 10 s");
  assert.equal(bannerText(state, 9_001), "reconnecting in 1 s");
  assert.equal(bannerText(state, 10_000), "reconnecting…");
  assert.equal(bannerText({ phase: "connecting", retryAt: null }, 0), "connecting…");
  assert.equal(bannerText({ phase: "online", retryAt: null }, 0), "online");
});
