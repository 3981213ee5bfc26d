import { test } from "node:test";
import assert from "node:assert/strict";
import { Session, ApiError, describeError } from "../js/app/session.js";
import { MemoryStorage } from "../js/storage.js";

/** A fake server: answers by path from a table of handlers, and records every request. */
function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push({ url, method: init.method ?? "GET", auth: init.headers?.Authorization, body: init.body ? JSON.parse(init.body) : undefined });
    const handler = routes[`${init.method ?? "GET"} ${url}`];
    if (!handler) return response(404, { error: "not_found", message: "no route" });
    return handler(calls.at(-1));
  };
  return { fetch, calls };
}

function response(status, body) {
  return {
    status,
    ok: status >= 200 && status < 300,
    statusText: String(status),
    json: async () => body,
  };
}

const session = (n, expiresAt) => ({ user: { id: 1, username: "alice" }, accessToken: `a${n}`, refreshToken: `r${n}`, expiresAt });

test("login keeps the session in storage; a new page load finds it", async () => {
  const storage = new MemoryStorage();
  const { fetch } = fakeFetch({ "POST /api/login": () => response(200, session(1, 10_000_000)) });
  const s = new Session({ fetch, storage, now: () => 0 });
  await s.login("alice", "pw");
  assert.equal(s.user.username, "alice");
  const again = new Session({ fetch, storage, now: () => 0 });
  assert.equal(again.signedIn, true);
  assert.equal(again.data.refreshToken, "r1");
});

test("a refused login is an ApiError with the server's code, and the words for it", async () => {
  const { fetch } = fakeFetch({ "POST /api/login": () => response(401, { error: "invalid_credentials", message: "nope" }) });
  const s = new Session({ fetch, storage: new MemoryStorage() });
  await assert.rejects(s.login("alice", "bad"), (e) => e instanceof ApiError && e.code === "invalid_credentials");
  assert.equal(describeError(new ApiError(401, "invalid_credentials", "")), "Unknown username or wrong password.");
  assert.match(describeError(new TypeError("fetch failed")), /could not be reached/);
});

test("an access token about to expire is renewed before the request; the refresh token is spent once", async () => {
  const storage = new MemoryStorage();
  let now = 0;
  const { fetch, calls } = fakeFetch({
    "POST /api/token/refresh": (c) => response(200, session(Number(c.body.refreshToken.slice(1)) + 1, now + 900_000)),
    "GET /api/me": () => response(200, { id: 1, username: "alice" }),
  });
  const s = new Session({ fetch, storage, now: () => now });
  s.set(session(1, 100_000));
  await s.api("/api/me");
  assert.equal(calls.at(-1).auth, "Bearer a1", "fresh enough: no renewal");
  now = 90_000; // 10 s before expiry
  await Promise.all([s.api("/api/me"), s.api("/api/me")]);
  assert.equal(calls.filter((c) => c.url === "/api/token/refresh").length, 1, "two requests, one renewal");
  assert.equal(calls.at(-1).auth, "Bearer a2");
  assert.equal(s.data.refreshToken, "r2");
});

test("a 401 renews once and retries; a refused refresh ends the session (no loop)", async () => {
  const storage = new MemoryStorage();
  let refreshOk = true;
  const { fetch, calls } = fakeFetch({
    "POST /api/token/refresh": () => (refreshOk ? response(200, session(2, 10_000_000)) : response(401, { error: "token_invalid", message: "spent" })),
    "GET /api/me": (c) => (c.auth === "Bearer a2" ? response(200, { id: 1 }) : response(401, { error: "token_expired", message: "expired" })),
  });
  const s = new Session({ fetch, storage, now: () => 0 });
  s.set(session(1, 10_000_000));
  assert.deepEqual(await s.api("/api/me"), { id: 1 });
  refreshOk = false;
  s.set(session(3, 10_000_000));
  await assert.rejects(s.api("/api/me"), (e) => e.status === 401);
  assert.equal(s.signedIn, false, "the session is gone: the login screen");
  assert.equal(storage.getItem("chatgroup.session"), null);
  assert.equal(calls.filter((c) => c.url === "/api/me").length, 3, "one retry, not a loop");
});

test("renew adopts a session another tab already renewed instead of spending a spent token", async () => {
  const storage = new MemoryStorage();
  const { fetch, calls } = fakeFetch({ "POST /api/token/refresh": () => response(401, { error: "token_invalid", message: "spent" }) });
  const tabA = new Session({ fetch, storage, now: () => 0 });
  tabA.set(session(1, 10_000_000));
  const tabB = new Session({ fetch, storage, now: () => 0 });
  // Tab A renews (simulated by writing what the server would have answered).
  tabA.set(session(2, 10_000_000));
  assert.equal(await tabB.renew(), true);
  assert.equal(tabB.data.refreshToken, "r2");
  assert.equal(calls.length, 0, "no request with the spent token");
});

test("a network failure while renewing rejects (retry later) and keeps the session", async () => {
  const storage = new MemoryStorage();
  const s = new Session({ fetch: async () => { throw new TypeError("fetch failed"); }, storage, now: () => 0 });
  s.set(session(1, 10_000_000));
  await assert.rejects(s.renew());
  assert.equal(s.signedIn, true);
});

test("logout forgets the session even when the server cannot be told", async () => {
  const storage = new MemoryStorage();
  const s = new Session({ fetch: async () => { throw new TypeError("offline"); }, storage });
  s.set(session(1, 10_000_000));
  await s.logout();
  assert.equal(s.signedIn, false);
  assert.equal(storage.getItem("chatgroup.session"), null);
});
