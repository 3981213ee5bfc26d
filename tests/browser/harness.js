// What every browser test needs: the real server binary on a scratch data directory, headless
// Debian Chromium through playwright-core, pages that record console errors, and a few steps
// (register, open a conversation, send) done the way a person does them.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = resolve(ROOT, process.env.CHATGROUP_BIN ?? "target/debug/chatgroup");
export const CHROME = process.env.CHROME_BIN ?? "/usr/bin/chromium";
/** Screenshots and server logs of a run (git-ignored). */
export const OUT = resolve(ROOT, "tests/browser/out");

/** Every wait in the suite is bounded by this (or less). */
export const TIMEOUT = 15_000;

/** @returns {Promise<number>} a port free right now on 127.0.0.1 */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** Every server process this test file started: none may outlive it, even when it is killed. */
const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    for (const child of children) child.kill("SIGKILL");
    process.exit(130);
  });
}

/**
 * The server binary on a scratch data directory. `restart()` starts it again on the same port
 * and data; `kill(signal)` stops it by its PID only.
 */
export class Server {
  constructor({ extraArgs = [], name = "server" } = {}) {
    this.extraArgs = extraArgs;
    this.name = name;
    this.dataDir = mkdtempSync(join(tmpdir(), "chatgroup-browser-"));
    this.child = null;
    this.port = 0;
    this.logs = [];
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  args() {
    return [
      "--listen",
      `127.0.0.1:${this.port}`,
      "--data-dir",
      this.dataDir,
      // Tests write faster than a person: lift the per-second limits, keep everything else.
      "--message-rate",
      "100000",
      "--message-burst",
      "100000",
      "--user-message-rate",
      "100000",
      "--request-rate",
      "10000",
      "--receipt-rate",
      "10000",
      "--typing-rate",
      "1000",
      "--durability",
      "normal",
      "--presence-debounce",
      "500ms",
      "--log",
      "warn",
      ...this.extraArgs,
    ];
  }

  async start() {
    if (!this.port) this.port = await freePort();
    // The page the tests see is the one built into the binary (what ships), unless a developer
    // asks for web/ from disk (edit, re-run, no rebuild) with CHATGROUP_BROWSER_WEB_DIR.
    const env = { ...process.env };
    delete env.CHATGROUP_WEB_DIR;
    const webDir = process.env.CHATGROUP_BROWSER_WEB_DIR ? ["--web-dir", process.env.CHATGROUP_BROWSER_WEB_DIR] : [];
    const child = spawn(BIN, [...this.args(), ...webDir], { stdio: ["ignore", "pipe", "pipe"], env });
    this.child = child;
    children.add(child);
    child.once("exit", () => children.delete(child));
    const keep = (chunk) => {
      this.logs.push(chunk.toString());
      if (this.logs.length > 500) this.logs.shift();
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const exited = new Promise((_, reject) => child.once("exit", (code, signal) => reject(new Error(`server exited early (${code ?? signal}): ${this.logs.join("").slice(-2000)}`))));
    exited.catch(() => {});
    const deadline = Date.now() + TIMEOUT;
    for (;;) {
      if (child.exitCode != null || child.signalCode != null) await exited;
      try {
        const response = await fetch(`${this.url}/healthz`);
        if (response.ok) return this;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`server not healthy within ${TIMEOUT} ms: ${this.logs.join("").slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the process by its PID and waits until it is gone. */
  async kill(signal = "SIGTERM") {
    const child = this.child;
    if (!child || child.exitCode != null || child.signalCode != null) return;
    const gone = new Promise((r) => child.once("exit", r));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(timer);
  }

  async restart() {
    await this.start();
  }

  /** Kills the process and removes the data directory (always, even after a failure). */
  async dispose() {
    await this.kill("SIGKILL").catch(() => {});
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  // -- REST, for seeding ------------------------------------------------------------------

  async rest(path, { method = "GET", token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  register(username, password = "correct horse battery") {
    return this.rest("/api/register", { method: "POST", body: { username, password } });
  }
}

/** Headless Debian Chromium, as the issue asks (no browser download). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROME,
    headless: true,
    args: ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * One person's browser: a context of its own (its own localStorage), one page, and every
 * console error and page error it shows.
 */
export class Person {
  /** @param {import("playwright-core").Browser} browser @param {Server} server @param {string} username */
  static async open(browser, server, username, { viewport = { width: 1280, height: 800 } } = {}) {
    const context = await browser.newContext({ viewport, acceptDownloads: true });
    const page = await context.newPage();
    const person = new Person(context, page, server, username);
    await page.goto(server.url + "/");
    return person;
  }

  constructor(context, page, server, username) {
    this.context = context;
    this.page = page;
    this.server = server;
    this.username = username;
    this.password = "correct horse battery";
    /** @type {string[]} */
    this.errors = [];
    /** Set while the server is deliberately down: a refused WebSocket is expected then. */
    this.expectSocketFailures = false;
    /** Set while a test spoils the session on purpose: the refresh is refused with 401. */
    this.expectRefusedRefresh = false;
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      const text = msg.text();
      if (this.expectSocketFailures && /^WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/ws' failed/.test(text)) return;
      // The refused refresh of a deliberately spoiled session is the browser's own log line.
      if (this.expectRefusedRefresh && text === "Failed to load resource: the server responded with a status of 401 (Unauthorized)" && msg.location().url.endsWith("/api/token/refresh")) return;
      this.errors.push(`console: ${text}`);
    });
    page.on("pageerror", (error) => this.errors.push(`pageerror: ${error.message}`));
    /** The last socket frames each way (not the heartbeat), for failure reports. */
    this.frames = [];
    const keep = (line) => {
      this.frames.push(line);
      if (this.frames.length > 40) this.frames.shift();
    };
    page.on("websocket", (ws) => {
      ws.on("framesent", ({ payload }) => typeof payload === "string" && payload !== "ping" && keep(`${Date.now() % 100_000} > ${payload.slice(0, 200)}`));
      ws.on("framereceived", ({ payload }) => typeof payload === "string" && payload !== "pong" && keep(`${Date.now() % 100_000} < ${payload.replace(/"lastMessage":\{[^}]*\}/g, "").slice(0, 300)}`));
      ws.on("close", () => keep(`${Date.now() % 100_000} closed`));
    });
    page.setDefaultTimeout(TIMEOUT);
  }

  /** Registers through the login screen. */
  async register() {
    const page = this.page;
    await page.getByTestId("login-username").fill(this.username);
    await page.getByTestId("login-password").fill(this.password);
    await page.getByTestId("register-submit").click();
    await this.waitOnline();
  }

  async login() {
    const page = this.page;
    await page.getByTestId("login-username").fill(this.username);
    await page.getByTestId("login-password").fill(this.password);
    await page.getByTestId("login-submit").click();
    await this.waitOnline();
  }

  async waitOnline() {
    await this.page.locator('[data-testid="banner"][data-state="online"]').waitFor();
  }

  /** @param {string} name */
  conversation(name) {
    return this.page.locator(`[data-testid="conversation-item"][data-name="${name}"]`);
  }

  async openConversation(name) {
    await this.conversation(name).click();
    await this.page.locator('[data-testid="chat-title"]', { hasText: name }).waitFor();
  }

  /** Starts (or opens) the direct chat with `other` through the New chat dialog. */
  async startDirect(other) {
    const page = this.page;
    await page.getByTestId("new-direct").click();
    await page.getByTestId("direct-search").fill(other);
    await page.locator(`[data-testid="user-result"][data-username="${other}"]`).click();
    await page.locator('[data-testid="chat-title"]', { hasText: other }).waitFor();
  }

  async createGroup(name, members) {
    const page = this.page;
    await page.getByTestId("new-group").click();
    await page.getByTestId("group-name").fill(name);
    for (const member of members) {
      await page.getByTestId("group-search").fill(member);
      await page.locator(`[data-testid="group-results"] [data-username="${member}"]`).click();
    }
    await page.getByTestId("group-create").click();
    await page.locator('[data-testid="chat-title"]', { hasText: name }).waitFor();
  }

  /** Types and sends a message with Enter. */
  async send(text) {
    const input = this.page.getByTestId("composer-input");
    await input.fill(text);
    await input.press("Enter");
  }

  /** The bodies of the text messages of the open conversation, as rendered (not system ones). */
  bodies() {
    return this.page.locator('[data-testid="message-body"]').allTextContents();
  }

  /** The status of the own message with this body. */
  status(body) {
    return this.page.locator('[data-testid="message"]', { has: this.page.locator('[data-testid="message-body"]', { hasText: new RegExp(`^${escapeRegExp(body)}$`) }) }).getByTestId("message-status");
  }

  /**
   * Waits for the own message `body` to reach `state`; on failure the error says where it
   * stopped and carries the last socket frames of this page and of `others`.
   * @param {string} body
   * @param {"sent" | "delivered" | "read"} state
   * @param {Person[]} [others]
   */
  async waitForStatus(body, state, others = []) {
    const status = this.status(body);
    try {
      await status.and(this.page.locator(`[data-status="${state}"]`)).waitFor();
    } catch (error) {
      const now = await status.getAttribute("data-status").catch(() => "missing");
      const visibility = await this.page.evaluate(() => document.visibilityState).catch(() => "?");
      error.message += `\n"${body}" on ${this.username}'s page is ${now} (page ${visibility})`;
      for (const p of [this, ...others]) error.message += `\n${p.username}'s frames:\n${p.frames.join("\n")}`;
      throw error;
    }
  }

  async screenshot(name) {
    mkdirSync(OUT, { recursive: true });
    const path = join(OUT, `${name}.png`);
    await this.page.screenshot({ path });
    return path;
  }

  async close() {
    await this.context.close().catch(() => {});
  }
}

export function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Waits until `fn()` returns something truthy (polled), or fails after `timeout` with `what`.
 * @template T
 * @param {() => Promise<T> | T} fn
 * @param {string} what
 * @returns {Promise<T>}
 */
export async function eventually(fn, what, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
