// Two people chatting through the page: a direct chat and a group, ticks, typing, presence,
// a file round trip, the XSS body, the security headers and the screenshots.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Server, Person, launchBrowser, eventually, ROOT } from "./harness.js";

let server;
let browser;
/** @type {Person} */ let alice;
/** @type {Person} */ let bob;
const people = [];

before(async () => {
  server = await new Server().start();
  browser = await launchBrowser();
});

after(async () => {
  for (const p of people) await p.close();
  await browser?.close();
  await server?.dispose();
});

async function person(username, options) {
  const p = await Person.open(browser, server, username, options);
  people.push(p);
  return p;
}

test("the page is served with a strict CSP and nosniff, and its modules as JavaScript", async () => {
  const page = await fetch(`${server.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  const csp = page.headers.get("content-security-policy") ?? "";
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(directive), `CSP has ${directive}: ${csp}`);
  }
  assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), "no unsafe-inline or unsafe-eval");
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  const html = await page.text();
  assert.ok(!/<script>|<style|style="|javascript:/i.test(html), "no inline script, style or javascript: URL in the page");
  const module = await fetch(`${server.url}/js/app/main.js`);
  assert.equal(module.status, 200);
  assert.match(module.headers.get("content-type"), /javascript/);
  assert.equal((await fetch(`${server.url}/js/app/nope.js`)).status, 404);
});

test("two people register and chat in a direct chat: ticks go sending → sent → delivered → read", async () => {
  alice = await person("alice");
  bob = await person("bob", { viewport: { width: 390, height: 844 } });
  await alice.register();
  await bob.register();
  await alice.page.getByTestId("me-name").filter({ hasText: "alice" }).waitFor();

  await alice.startDirect("bob");
  await alice.send("Hi Bob! Lunch at noon?");
  // Bob is not in the conversation yet: delivered (his page got it), not read. His unread
  // count is the server's: others' messages after his read marker, the "started a chat"
  // system message included.
  await alice.waitForStatus("Hi Bob! Lunch at noon?", "delivered", [bob]);
  await bob.conversation("alice").getByTestId("unread-badge").filter({ hasText: "2" }).waitFor();
  await eventually(async () => /^\(2\) chatgroup$/.test(await bob.page.title()), "bob's tab title shows 2 unread");

  await bob.openConversation("alice");
  assert.deepEqual(await bob.bodies(), ["Hi Bob! Lunch at noon?"]);
  await alice.waitForStatus("Hi Bob! Lunch at noon?", "read", [bob]);
  await eventually(async () => (await bob.page.title()) === "alice · chatgroup", "bob's unread count cleared from the title");
  await bob.conversation("alice").getByTestId("unread-badge").waitFor({ state: "hidden" }).catch(() => {});

  await bob.send("Sure, see you there");
  await alice.page.locator('[data-testid="message-body"]', { hasText: "Sure, see you there" }).waitFor();
  await bob.waitForStatus("Sure, see you there", "read", [alice]);
  assert.deepEqual(await alice.bodies(), ["Hi Bob! Lunch at noon?", "Sure, see you there"]);
  // The list shows the last message and sorts by activity.
  await alice.conversation("bob").locator(".conv-preview", { hasText: "Sure, see you there" }).waitFor();
});

test("typing shows on the other page and goes away", async () => {
  await alice.page.getByTestId("composer-input").fill("I am writ");
  await bob.page.getByTestId("typing").filter({ hasText: "alice is typing…" }).waitFor();
  await alice.page.getByTestId("composer-input").fill("");
  await eventually(async () => (await bob.page.getByTestId("typing").textContent()) === "", "the typing line cleared");
});

test("a message body that looks like HTML is shown as text", async () => {
  const xss = "<img src=x onerror=alert(1)>";
  const dialogs = [];
  bob.page.on("dialog", (d) => {
    dialogs.push(d.message());
    d.dismiss();
  });
  await alice.send(xss);
  const body = bob.page.locator('[data-testid="message-body"]', { hasText: xss });
  await body.waitFor();
  assert.equal(await body.textContent(), xss);
  assert.equal(await bob.page.locator("#messages img").count(), 0, "no <img> was created from the body");
  assert.deepEqual(dialogs, []);
  // The list preview is text too.
  assert.equal(await bob.page.locator("#conversations img").count(), 0);
});

test("a group: create it with a member, chat, and the member sees everything once", async () => {
  await alice.createGroup("Weekend trip", ["bob"]);
  await alice.send("Who is in for Saturday?");
  // Bob is on a phone-sized screen: back to the list first.
  await bob.page.getByTestId("back").click();
  await bob.openConversation("Weekend trip");
  await bob.page.locator('[data-testid="message-body"]', { hasText: "Who is in for Saturday?" }).waitFor();
  await bob.send("Me! I'll bring the map");
  await alice.page.locator('[data-testid="message-body"]', { hasText: "I'll bring the map" }).waitFor();
  await alice.waitForStatus("Who is in for Saturday?", "read", [bob]);
  assert.deepEqual(await bob.bodies(), ["Who is in for Saturday?", "Me! I'll bring the map"]);
  assert.deepEqual(await alice.bodies(), ["Who is in for Saturday?", "Me! I'll bring the map"]);
  // The members dialog shows who is online.
  await alice.page.getByTestId("members-button").click();
  await alice.page.locator('[data-testid="member"][data-username="bob"][data-online="true"]').waitFor();
  await alice.page.keyboard.press("Escape");
  await alice.page.locator("#dialog-members").waitFor({ state: "hidden" });
});

test("a file round-trips byte for byte", async () => {
  const bytes = randomBytes(200_000); // four chunks of the server's 64 KiB
  const sha = createHash("sha256").update(bytes).digest("hex");
  await alice.page.getByTestId("file-input").setInputFiles({ name: "trip-plan.bin", mimeType: "application/octet-stream", buffer: bytes });
  const own = alice.page.locator('[data-testid="message"]', { has: alice.page.locator('[data-testid="file-name"]', { hasText: "trip-plan.bin" }) });
  await own.locator('[data-testid="message-status"][data-status="read"]').waitFor();

  const theirs = bob.page.locator('[data-testid="message"]', { has: bob.page.locator('[data-testid="file-name"]', { hasText: "trip-plan.bin" }) });
  const [download] = await Promise.all([bob.page.waitForEvent("download"), theirs.getByTestId("download").click()]);
  assert.equal(download.suggestedFilename(), "trip-plan.bin");
  const got = readFileSync(await download.path());
  assert.equal(got.length, bytes.length);
  assert.equal(createHash("sha256").update(got).digest("hex"), sha);
});

test("presence: the other person goes offline and comes back", async () => {
  await alice.page.getByTestId("back").click().catch(() => {}); // desktop: no back button shown
  await alice.page.locator('[data-testid="conversation-item"][data-name="bob"][data-online="true"]').waitFor();
  await bob.close();
  await alice.page.locator('[data-testid="conversation-item"][data-name="bob"][data-online="false"]').waitFor();
  await alice.openConversation("bob");
  await alice.page.getByTestId("chat-subtitle").filter({ hasText: /last seen/ }).waitFor();

  bob = await person("bob", { viewport: { width: 390, height: 844 } });
  await bob.login();
  await alice.page.locator('[data-testid="conversation-item"][data-name="bob"][data-online="true"]').waitFor();
  await alice.page.getByTestId("chat-subtitle").filter({ hasText: "online" }).waitFor();
  // Logged in again, bob sees the direct chat's history (fetched, not replayed from nothing).
  await bob.openConversation("alice");
  await bob.page.locator('[data-testid="message-body"]', { hasText: "Sure, see you there" }).waitFor();
});

test("screenshots of the chat view at desktop and phone size", async () => {
  await alice.openConversation("Weekend trip");
  await alice.send("Forecast says sunny ☀️ — leaving at 8:30 from the station");
  await bob.page.getByTestId("back").click();
  await bob.openConversation("Weekend trip");
  await bob.page.locator('[data-testid="message-body"]', { hasText: "leaving at 8:30" }).waitFor();
  // A picture, drawn on a canvas in alice's page: shown inline on both pages (fetched with
  // the token into a blob: URL, which the CSP allows for images).
  const png = Buffer.from(
    await alice.page.evaluate(() => {
      const canvas = document.createElement("canvas");
      canvas.width = 480;
      canvas.height = 270;
      const g = canvas.getContext("2d");
      const sky = g.createLinearGradient(0, 0, 0, 270);
      sky.addColorStop(0, "#ffb36b");
      sky.addColorStop(1, "#6b8cff");
      g.fillStyle = sky;
      g.fillRect(0, 0, 480, 270);
      g.fillStyle = "#fff3c4";
      g.beginPath();
      g.arc(240, 190, 60, 0, Math.PI * 2);
      g.fill();
      g.fillStyle = "#2c3e66";
      g.fillRect(0, 210, 480, 60);
      return canvas.toDataURL("image/png").split(",")[1];
    }),
    "base64",
  );
  await alice.page.getByTestId("file-input").setInputFiles({ name: "sunrise.png", mimeType: "image/png", buffer: png });
  const picture = bob.page.locator('[data-testid="image-preview"]');
  await picture.waitFor();
  await eventually(() => picture.evaluate((img) => img.complete && img.naturalWidth === 480), "bob's page to show the picture");
  await bob.send("Perfect. I'll bring coffee for everyone");
  await alice.page.locator('[data-testid="message-body"]', { hasText: "coffee for everyone" }).waitFor();
  await alice.waitForStatus("Forecast says sunny ☀️ — leaving at 8:30 from the station", "read", [bob]);
  const desktop = await alice.screenshot("chat-desktop");
  const phone = await bob.screenshot("chat-phone");
  if (process.env.UPDATE_SCREENSHOTS) {
    mkdirSync(join(ROOT, "docs/img"), { recursive: true });
    copyFileSync(desktop, join(ROOT, "docs/img/chat-desktop.png"));
    copyFileSync(phone, join(ROOT, "docs/img/chat-phone.png"));
  }
});

test("keyboard only: create a group, add someone, send a message, close a dialog with Escape", async () => {
  const page = alice.page;
  const focused = () => page.evaluate(() => document.activeElement?.dataset.testid ?? document.activeElement?.tagName);
  await page.getByTestId("new-group").focus();
  await page.keyboard.press("Enter");
  assert.equal(await focused(), "group-name", "the dialog opens on its first field");
  await page.keyboard.type("Keyboard club");
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "group-search");
  await page.keyboard.type("bo");
  await page.locator('[data-testid="group-results"] [data-username="bob"]').waitFor();
  await page.keyboard.press("Enter"); // picks the first match
  await page.locator('[data-testid="group-member-chip"]', { hasText: "bob" }).waitFor();
  // Tab on to the Create button (past Cancel) and press it.
  for (let i = 0; i < 5 && (await focused()) !== "group-create"; i++) await page.keyboard.press("Tab");
  assert.equal(await focused(), "group-create");
  await page.keyboard.press("Enter");
  await page.locator('[data-testid="chat-title"]', { hasText: "Keyboard club" }).waitFor();
  assert.equal(await focused(), "composer-input", "the composer has the focus in the new conversation");
  await page.keyboard.type("Typed and sent from the keyboard");
  await page.keyboard.press("Enter");
  await alice.waitForStatus("Typed and sent from the keyboard", "delivered", [bob]);
  await page.getByTestId("members-button").focus();
  await page.keyboard.press("Enter");
  await page.locator('[data-testid="member"][data-username="bob"]').waitFor();
  await page.keyboard.press("Escape");
  await page.locator("#dialog-members").waitFor({ state: "hidden" });
});

test("leaving a group removes it from the list", async () => {
  await bob.page.getByTestId("members-button").click();
  await bob.page.getByTestId("leave").click();
  await bob.conversation("Weekend trip").waitFor({ state: "detached" });
  await alice.openConversation("Weekend trip");
  await alice.page.locator('[data-testid="message"]', { hasText: "bob left" }).waitFor();
});

test("logging out lands on the login screen, and a reload stays logged in", async () => {
  await alice.page.reload();
  await alice.waitOnline();
  await alice.conversation("bob").waitFor();
  await alice.page.getByTestId("logout").click();
  await alice.page.getByTestId("login-username").waitFor();
  await alice.page.reload();
  await alice.page.getByTestId("login-username").waitFor();
});

test("a session the server refuses (close 4001, refresh refused) lands on the login screen, not in a reconnect loop", async () => {
  const page = bob.page;
  // Both tokens become worthless: the socket is closed with 4001, the refresh answers 401.
  bob.expectRefusedRefresh = true;
  await page.evaluate(() => {
    const s = JSON.parse(localStorage.getItem("chatgroup.session"));
    localStorage.setItem("chatgroup.session", JSON.stringify({ ...s, accessToken: "not.a.token", refreshToken: "spent", expiresAt: Date.now() + 3_600_000 }));
  });
  let sockets = 0;
  page.on("websocket", () => sockets++);
  await page.reload();
  await page.getByTestId("login-error").filter({ hasText: "session has ended" }).waitFor();
  assert.equal(await page.getByTestId("login-username").isVisible(), true);
  const settled = sockets;
  await page.waitForTimeout(2500); // longer than the first backoff steps: nothing reconnects
  assert.equal(sockets, settled, "no reconnect after the session ended");
  assert.ok(settled <= 2, `one attempt with the old token (and one after a renewal at most), got ${settled}`);
  // Logging in again works in the same page.
  await bob.login();
  await bob.conversation("alice").waitFor();
});

test("no console errors or page errors on any page", () => {
  for (const p of people) assert.deepEqual(p.errors, [], `${p.username}'s page`);
});
