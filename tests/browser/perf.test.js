// A conversation of 10,000 messages: only the newest page is fetched, the first screen paints
// within 300 ms of `ready`, and scrolling back through history keeps the DOM bounded and the
// view still. The figures are printed (and written to out/perf.json) for the README.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Server, Person, launchBrowser, eventually, OUT } from "./harness.js";

const MESSAGES = 10_000;
/** The bound, on this machine. */
const FIRST_SCREEN_BUDGET_MS = 300;

let server;
let browser;
/** @type {Person} */ let bob;
let conversationId;
const figures = {};

before(async () => {
  server = await new Server().start();
  browser = await launchBrowser();
  const alice = await server.register("alice");
  await server.register("bob");
  const c = await server.rest("/api/conversations", { method: "POST", token: alice.accessToken, body: { kind: "direct", with: "bob" } });
  conversationId = c.id;
  // Seeded over HTTP, 32 at a time: the same path as a socket `send`, committed before acked.
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < MESSAGES) {
      const i = next++;
      await server.rest("/api/messages", { method: "POST", token: alice.accessToken, body: { conversation: c.id, localId: `seed-${i}`, body: `Message number ${i}: the quick brown fox jumps over the lazy dog` } });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  figures.seedMs = Date.now() - started;
});

after(async () => {
  await bob?.close();
  await browser?.close();
  await server?.dispose();
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "perf.json"), JSON.stringify(figures, null, 2) + "\n");
  console.log(`# perf figures: ${JSON.stringify(figures)}`);
});

/** Counts the messages that reach the page over its socket, by frame type. */
function watchFrames(page) {
  const seen = { history: 0, historyMessages: 0, syncMessages: 0, live: 0 };
  page.on("websocket", (ws) => {
    ws.on("framereceived", ({ payload }) => {
      if (typeof payload !== "string" || payload[0] !== "{") return;
      const msg = JSON.parse(payload);
      if (msg.type === "history") {
        seen.history += 1;
        seen.historyMessages += msg.messages.length;
      } else if (msg.type === "sync_batch") seen.syncMessages += msg.messages.length;
      else if (msg.type === "new_message") seen.live += 1;
    });
  });
  return seen;
}

async function firstScreenMs(page) {
  const text = await eventually(() => page.evaluate(() => document.body.dataset.firstScreenMs), "the first-screen mark");
  return Number(text);
}

test("first login on a fresh device, the conversation in the address: newest page only, first screen within 300 ms of ready", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  bob = new Person(context, page, server, "bob");
  const frames = watchFrames(page);
  await page.goto(`${server.url}/#/c/${conversationId}`);
  await bob.login();
  const ms = await firstScreenMs(page);
  figures.firstScreenFreshMs = ms;
  const rendered = await page.locator('[data-testid="message"]').count();
  figures.renderedFresh = rendered;
  assert.ok(frames.syncMessages + frames.historyMessages <= 100, `only the newest page was fetched (got ${JSON.stringify(frames)})`);
  assert.ok(rendered <= 60, `a screen's worth rendered, not the conversation (${rendered})`);
  assert.ok(ms < FIRST_SCREEN_BUDGET_MS, `first screen ${ms} ms after ready`);
  assert.equal(await page.locator('[data-testid="message-body"]').last().textContent(), await lastBody());
});

test("reload with the conversation open: newest page only, first screen within 300 ms of ready", async () => {
  const frames = watchFrames(bob.page);
  await bob.page.reload();
  const ms = await firstScreenMs(bob.page);
  figures.firstScreenReloadMs = ms;
  const rendered = await bob.page.locator('[data-testid="message"]').count();
  assert.ok(frames.syncMessages + frames.historyMessages <= 100, `only the newest page was fetched (got ${JSON.stringify(frames)})`);
  assert.ok(rendered <= 60, `rendered ${rendered}`);
  assert.ok(ms < FIRST_SCREEN_BUDGET_MS, `first screen ${ms} ms after ready`);
});

test("scrolling back 1,000 messages: the DOM stays bounded, the view does not jump, no long frames", async () => {
  const page = bob.page;
  await page.evaluate(() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longTasks.push(e.duration);
    }).observe({ type: "longtask", buffered: false });
  });
  const steps = [];
  let maxRendered = 0;
  let maxJump = 0;
  const oldest = () => page.evaluate(() => Number(document.querySelector('#messages [data-testid="message"][data-seq]')?.dataset.seq));
  const startSeq = await oldest();
  for (let i = 0; i < 40; i++) {
    const before = await page.evaluate(() => {
      const scroller = document.getElementById("scroller");
      const first = document.querySelector('#messages [data-testid="message"][data-seq]');
      const key = first.dataset.key;
      const top = first.getBoundingClientRect().top;
      scroller.scrollTop = 0;
      const topAfterScroll = first.getBoundingClientRect().top;
      return { key, top, topAfterScroll, seq: Number(first.dataset.seq), at: performance.now() };
    });
    // Wait for the window to move up (from memory, or after a history page arrived).
    await eventually(async () => (await oldest()) < before.seq, `older messages above seq ${before.seq}`);
    const after = await page.evaluate((key) => {
      const el = document.querySelector(`#messages [data-key="${key}"]`);
      return { top: el ? el.getBoundingClientRect().top : null, at: performance.now(), rendered: document.querySelectorAll('#messages [data-testid="message"]').length };
    }, before.key);
    steps.push(after.at - before.at);
    maxRendered = Math.max(maxRendered, after.rendered);
    if (after.top != null) maxJump = Math.max(maxJump, Math.abs(after.top - before.topAfterScroll));
    if (startSeq - (await oldest()) >= 1000) break;
  }
  const longTasks = await page.evaluate(() => window.__longTasks);
  figures.scrollBackMessages = startSeq - (await oldest());
  figures.scrollSteps = steps.length;
  figures.scrollStepMedianMs = Math.round(steps.sort((a, b) => a - b)[Math.floor(steps.length / 2)]);
  figures.scrollStepMaxMs = Math.round(steps[steps.length - 1]);
  figures.maxRenderedMessages = maxRendered;
  figures.maxJumpPx = Math.round(maxJump * 10) / 10;
  figures.longTasks = longTasks.length;
  figures.longestTaskMs = Math.round(Math.max(0, ...longTasks));
  assert.ok(figures.scrollBackMessages >= 1000, `scrolled back ${figures.scrollBackMessages} messages`);
  assert.ok(maxRendered <= 210, `the DOM stays bounded (${maxRendered} messages at most)`);
  assert.ok(maxJump <= 2, `what was on screen stayed put (moved ${maxJump} px)`);
  assert.ok(figures.longestTaskMs < 200, `no frame blocked for long (${figures.longestTaskMs} ms)`);
});

test("no console errors or page errors", () => {
  assert.deepEqual(bob.errors, []);
});

async function lastBody() {
  const token = (await server.rest("/api/login", { method: "POST", body: { username: "bob", password: "correct horse battery" } })).accessToken;
  const page = await server.rest(`/api/conversations/${conversationId}/messages?limit=1`, { token });
  return page.messages.at(-1).body;
}
