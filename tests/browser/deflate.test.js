// permessage-deflate against Chromium's own `new WebSocket()`: the browser offers it on every
// connection, the server (default --deflate shared) accepts, and chat traffic crosses compressed
// both ways, byte for byte. Driven from a page of the server (same origin), with no page code in
// between, so what is checked is the browser's RFC 7692 against ours.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Server, launchBrowser } from "./harness.js";

let server;
let browser;

before(async () => {
  server = await new Server().start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

/** A metric's value from /metrics. */
async function metric(name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.split(" ")[1]);
}

test("Chromium negotiates permessage-deflate and chat messages cross compressed both ways, intact", async () => {
  const alice = await server.register("deflate-alice");
  const bob = await server.register("deflate-bob");
  const direct = await server.rest("/api/conversations", {
    method: "POST",
    token: alice.accessToken,
    body: { kind: "direct", with: "deflate-bob" },
  });
  const before = {
    connections: await metric("chatgroup_deflate_connections_total"),
    messagesIn: await metric("chatgroup_deflate_messages_in_total"),
    messagesOut: await metric("chatgroup_deflate_messages_out_total"),
  };

  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("console", (msg) => msg.type() === "error" && errors.push(msg.text()));
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${server.url}/`);

  // Chat-like text that compresses well, with non-ASCII so inflated UTF-8 is checked too, up
  // to the server's 4,000-character body limit (every one above the deflate threshold).
  const bodies = [
    "Meet at the station at 8:30 — bring the map, the tickets and coffee ☕ ".repeat(40),
    "ok ".repeat(1300),
    `résumé ${"ünïcödé ✓ ".repeat(200)}`,
  ];
  const result = await page.evaluate(
    async ({ aliceToken, bobToken, conversation, bodies }) => {
      const open = (token) =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`ws://${location.host}/ws`);
          const messages = [];
          const waiters = [];
          ws.onmessage = (event) => {
            if (event.data === "pong") return;
            const msg = JSON.parse(event.data);
            messages.push(msg);
            for (const w of [...waiters]) if (w.match(msg)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(msg); }
          };
          ws.onerror = () => reject(new Error("socket error"));
          ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token }));
          const next = (match) =>
            new Promise((res, rej) => {
              const found = messages.find(match);
              if (found) return res(found);
              waiters.push({ match, resolve: res });
              setTimeout(() => rej(new Error("timed out")), 10_000);
            });
          next((m) => m.type === "ready").then(() => resolve({ ws, next }), reject);
        });
      const a = await open(aliceToken);
      const b = await open(bobToken);
      const acks = [];
      const received = [];
      for (const [i, body] of bodies.entries()) {
        const localId = `deflate-${i}`;
        a.ws.send(JSON.stringify({ type: "send", conversation, localId, body }));
        acks.push(await a.next((m) => m.type === "ack" && m.localId === localId));
        received.push(await b.next((m) => m.type === "new_message" && m.localId === localId));
      }
      const extensions = [a.ws.extensions, b.ws.extensions];
      a.ws.close(1000);
      b.ws.close(1000);
      return { extensions, acks, received: received.map((m) => m.body) };
    },
    { aliceToken: alice.accessToken, bobToken: bob.accessToken, conversation: direct.id, bodies },
  );

  for (const ext of result.extensions) assert.match(ext, /^permessage-deflate/, "the browser reports the extension agreed");
  assert.equal(result.acks.length, bodies.length);
  assert.deepEqual(result.received, bodies, "each body arrives exactly as sent");
  assert.ok((await metric("chatgroup_deflate_connections_total")) >= before.connections + 2);
  // Chromium compresses what it sends; the server compressed what it delivered.
  assert.ok((await metric("chatgroup_deflate_messages_in_total")) >= before.messagesIn + bodies.length, "the sends arrived compressed");
  assert.ok((await metric("chatgroup_deflate_messages_out_total")) >= before.messagesOut + bodies.length, "the deliveries went out compressed");
  assert.deepEqual(errors, []);
  await context.close();
});
