// The signed-in session: tokens in storage, the REST calls, and renewing the access token.

import { readJson, writeJson } from "../storage.js";

const SESSION_KEY = "chatgroup.session";

/** Renew the access token this long before it expires, so a request never carries a stale one. */
const RENEW_MARGIN_MS = 60_000;

/**
 * A REST error: the server's `{error, message}` body with the HTTP status.
 */
export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message @param {number} [retryAfterMs] */
  constructor(status, code, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * The words a person sees for a REST error.
 * @param {unknown} error
 * @returns {string}
 */
export function describeError(error) {
  if (!(error instanceof ApiError)) return "The server could not be reached. Check the connection and try again.";
  switch (error.code) {
    case "invalid_credentials":
      return "Unknown username or wrong password.";
    case "username_taken":
      return "That username is taken. Pick another one.";
    case "invalid_username":
      return "Usernames are 3 to 32 letters, digits, dots, dashes or underscores, starting with a letter or digit.";
    case "invalid_password":
      return "Passwords need at least 8 characters.";
    case "rate_limited":
      return `Too many attempts. Try again in ${Math.max(1, Math.ceil((error.retryAfterMs ?? 1000) / 1000))} s.`;
    case "not_found":
      return "No such user.";
    case "not_owner":
      return "Only the group's owner can do that.";
    case "not_member":
      return "You are not a member of that conversation.";
    default:
      return error.message || "Something went wrong.";
  }
}

/**
 * @typedef {{user: {id: number, username: string}, accessToken: string, expiresAt: number,
 *            refreshToken: string}} SessionData
 */

/**
 * The session and the REST API behind it. `fetch`, storage and the clock are passed in, so
 * the renewal rules run under `node --test`.
 *
 * The refresh token is single-use: each renewal spends it. Two tabs share `localStorage`, so
 * before renewing, a tab re-reads storage: if another tab already renewed, it adopts that
 * session instead of spending a token that is already spent.
 */
export class Session {
  /**
   * @param {object} options
   * @param {typeof fetch} options.fetch
   * @param {{getItem: Function, setItem: Function, removeItem: Function}} options.storage
   * @param {() => number} [options.now]
   * @param {string} [options.base] URL prefix of the API ("" on the page itself)
   * @param {(data: SessionData | null) => void} [options.onChange]
   */
  constructor({ fetch, storage, now = () => Date.now(), base = "", onChange = () => {} }) {
    this.fetchImpl = fetch;
    this.storage = storage;
    this.now = now;
    this.base = base;
    this.onChange = onChange;
    /** @type {SessionData | null} */
    this.data = this.load();
    /** @type {Promise<boolean> | null} the renewal in progress (one at a time) */
    this.renewing = null;
  }

  /** @returns {SessionData | null} */
  load() {
    const data = readJson(this.storage, SESSION_KEY, null);
    if (!data || typeof data.refreshToken !== "string" || !data.user || typeof data.user.id !== "number") return null;
    return data;
  }

  /** @returns {{id: number, username: string} | null} */
  get user() {
    return this.data?.user ?? null;
  }

  get signedIn() {
    return this.data != null;
  }

  /** @param {SessionData | null} data */
  set(data) {
    this.data = data;
    if (data) writeJson(this.storage, SESSION_KEY, data);
    else this.storage.removeItem(SESSION_KEY);
    this.onChange(data);
  }

  /** @param {string} username @param {string} password */
  async login(username, password) {
    this.set(await this.post("/api/login", { username, password }));
  }

  /** @param {string} username @param {string} password */
  async register(username, password) {
    this.set(await this.post("/api/register", { username, password }));
  }

  /** Ends the session here and on the server (best effort: the local session goes regardless). */
  async logout() {
    const token = this.data?.refreshToken;
    this.set(null);
    if (token) {
      try {
        await this.post("/api/logout", { refreshToken: token });
      } catch {
        // Offline or already spent: the token lapses on its own.
      }
    }
  }

  /**
   * A usable access token, renewed first when it is about to expire.
   * @returns {Promise<string | null>} null when the session is gone
   */
  async accessToken() {
    if (!this.data) return null;
    if (this.data.expiresAt - this.now() < RENEW_MARGIN_MS) {
      const ok = await this.renew();
      if (!ok) return null;
    }
    return this.data?.accessToken ?? null;
  }

  /**
   * Renews the access token with the refresh token.
   * @returns {Promise<boolean>} true when renewed; false when the session is really gone (the
   *   refresh token was refused: the login screen). Rejects when the server could not be
   *   reached (try again later).
   */
  renew() {
    if (!this.renewing) {
      this.renewing = this.renewOnce().finally(() => {
        this.renewing = null;
      });
    }
    return this.renewing;
  }

  async renewOnce() {
    const mine = this.data;
    if (!mine) return false;
    // Another tab may have renewed (and spent the token this one holds) meanwhile.
    const stored = this.load();
    if (stored && stored.user.id === mine.user.id && stored.refreshToken !== mine.refreshToken && stored.expiresAt - this.now() > RENEW_MARGIN_MS) {
      this.set(stored);
      return true;
    }
    try {
      this.set(await this.post("/api/token/refresh", { refreshToken: mine.refreshToken }));
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        // One more look: a tab that renewed in the same instant spent our token.
        const again = this.load();
        if (again && again.user.id === mine.user.id && again.refreshToken !== mine.refreshToken) {
          this.set(again);
          return true;
        }
        this.set(null);
        return false;
      }
      throw error;
    }
  }

  /**
   * An authenticated REST call. A 401 renews the token once and retries.
   * @param {string} path
   * @param {{method?: string, body?: unknown, raw?: boolean}} [options] `raw`: return the Response
   * @returns {Promise<any>}
   */
  async api(path, { method = "GET", body, raw = false } = {}) {
    for (let attempt = 0; ; attempt++) {
      const token = await this.accessToken();
      if (!token) throw new ApiError(401, "not_authenticated", "signed out");
      const headers = { Authorization: `Bearer ${token}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await this.fetchImpl(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
      if (response.status === 401 && attempt === 0) {
        if (await this.renew()) continue;
      }
      if (!response.ok) throw await errorOf(response);
      if (raw) return response;
      if (response.status === 204) return null;
      return response.json();
    }
  }

  async post(path, body) {
    const response = await this.fetchImpl(this.base + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
    if (!response.ok) throw await errorOf(response);
    return response.status === 204 ? null : response.json();
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  return new ApiError(response.status, body?.error ?? `http_${response.status}`, body?.message ?? response.statusText, body?.retryAfterMs);
}
