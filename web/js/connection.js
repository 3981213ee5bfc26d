// The chat socket's lifecycle: connect, heartbeat, reconnect, and the banner that reports it.

import { Backoff } from "./backoff.js";

/** Close code the server uses for a bad or expired token (docs/protocol.md, Closing). */
export const CLOSE_AUTH = 4001;

// WebSocket.readyState values; the constructor may be a fake without the static constants.
const CONNECTING = 0;
const OPEN = 1;

/**
 * What the connection is doing, for the banner and for the page's logic.
 * - `idle`: not started; `stopped`: stopped on purpose (logout)
 * - `connecting`: an attempt is in progress
 * - `online`: the socket is open
 * - `reconnecting`: waiting for the next attempt, at `retryAt`
 * - `offline`: like `reconnecting`, but the browser says the network is gone
 * - `session_gone`: the server refused the session (close 4001) and it could not be renewed
 * @typedef {{phase: "idle"|"connecting"|"online"|"reconnecting"|"offline"|"session_gone"|"stopped",
 *            retryAt: number | null, reason: string | null}} ConnectionState
 */

/**
 * The banner line for a state, e.g. "reconnecting in 4 s". Call it again every second while
 * `retryAt` is set, so the count stays true.
 * @param {ConnectionState} state
 * @param {number} now the clock `retryAt` was taken from
 * @returns {string}
 */
export function bannerText(state, now) {
  switch (state.phase) {
    case "idle":
    case "connecting":
      return "connecting…";
    case "online":
      return "online";
    case "reconnecting":
    case "offline": {
      const seconds = state.retryAt == null ? 0 : Math.ceil((state.retryAt - now) / 1000);
      if (state.phase === "offline") return seconds > 0 ? `offline, retrying in ${seconds} s` : "offline";
      return seconds > 0 ? `reconnecting in ${seconds} s` : "reconnecting…";
    }
    case "session_gone":
      return "signed out";
    case "stopped":
      return "disconnected";
    default:
      return state.phase;
  }
}

/**
 * One chat socket at a time, kept alive across network trouble.
 *
 * Everything that touches the outside world is injected (the WebSocket constructor, timers and
 * clock), so the same code runs in the page and under `node --test` with a fake socket and fake
 * time. The connection knows nothing of the chat protocol except the text heartbeat and close
 * code 4001; the page authenticates in `onOpen` and reads everything else in `onMessage`.
 */
export class Connection {
  /**
   * @param {object} options
   * @param {string | (() => string)} options.url the `/ws` URL (no token in it: tokens in URLs
   *   end up in logs, so the page sends an `auth` message from `onOpen`)
   * @param {new (url: string) => any} options.WebSocket
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers]
   * @param {() => number} [options.now] milliseconds
   * @param {Backoff} [options.backoff]
   * @param {number} [options.pingIntervalMs] text `ping` period (10 s)
   * @param {number} [options.pongTimeoutMs] silence after a `ping` that counts as dead (20 s)
   * @param {number} [options.connectTimeoutMs] an attempt that has not opened by then is dropped
   * @param {number} [options.stableAfterMs] open this long → the backoff starts over (10 s)
   * @param {number} [options.offlineRetryMs] least wait between attempts while the browser
   *   says it is offline (30 s; its `online` event retries at once)
   * @param {(send: (data: string | ArrayBufferView | ArrayBuffer) => boolean) => void} [options.onOpen]
   * @param {(data: any) => void} [options.onMessage] every frame except `pong`
   * @param {(code: number, reason: string) => void} [options.onClose] each socket that ended
   * @param {(state: ConnectionState) => void} [options.onStateChange]
   * @param {(reason: string) => Promise<boolean>} [options.renewSession] called on close 4001:
   *   refresh the token and resolve true to reconnect at once, false when the session is really
   *   gone (the login screen). A rejection counts as a network failure: retry later.
   */
  constructor(options) {
    this.url = options.url;
    this.WebSocket = options.WebSocket;
    this.timers = options.timers ?? { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (id) => clearTimeout(id) };
    this.now = options.now ?? (() => Date.now());
    this.backoff = options.backoff ?? new Backoff();
    this.pingIntervalMs = options.pingIntervalMs ?? 10_000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 20_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 20_000;
    this.stableAfterMs = options.stableAfterMs ?? 10_000;
    this.offlineRetryMs = options.offlineRetryMs ?? 30_000;
    this.onOpen = options.onOpen ?? (() => {});
    this.onMessage = options.onMessage ?? (() => {});
    this.onClose = options.onClose ?? (() => {});
    this.onStateChange = options.onStateChange ?? (() => {});
    this.renewSession = options.renewSession ?? null;

    /** @type {ConnectionState} */
    this.state = { phase: "idle", retryAt: null, reason: null };
    this.socket = null;
    this.browserOffline = false;
    // Set after a successful renewal, cleared by the first frame a socket receives: a second
    // 4001 before any frame means the fresh token was refused too, so renewing again would
    // only loop.
    this.renewedUnproven = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.deadlineTimer = null;
    this.connectTimer = null;
    this.stableTimer = null;
  }

  /** Starts connecting (no-op when already running). */
  start() {
    if (this.state.phase === "idle" || this.state.phase === "stopped" || this.state.phase === "session_gone") {
      this.renewedUnproven = false;
      this.connect();
    }
  }

  /** Closes the socket and stops reconnecting (logout, or the page going away). */
  stop() {
    this.clearRetry();
    this.dropSocket(1000, "bye");
    this.setState("stopped");
  }

  /**
   * Sends one frame if the socket is open.
   * @param {string | ArrayBufferView | ArrayBuffer} data
   * @returns {boolean} false when it could not be sent (the caller keeps it for later)
   */
  send(data) {
    if (!this.socket || this.socket.readyState !== OPEN) return false;
    this.socket.send(data);
    return true;
  }

  /**
   * A hint from the browser: `online` (the `online` event), `visible` (`visibilitychange` to
   * visible) or `offline` (the `offline` event). Waiting out a backoff after the network came
   * back would only make the person wait, so `online` and `visible` try at once.
   * @param {"online" | "visible" | "offline"} kind
   */
  hint(kind) {
    const phase = this.state.phase;
    if (kind === "offline") {
      this.browserOffline = true;
      if (phase === "reconnecting") this.setState("offline", this.state.retryAt);
      // A socket does not notice a network that went away: Chromium keeps it "open" and
      // silently holds what is sent until the ping deadline. Saying "online" meanwhile would be
      // a lie, so the socket is given up at once (the outbox re-sends by localId, so nothing
      // held in it is lost or doubled) and the next attempt waits for `online` or the backoff.
      if ((phase === "online" || phase === "connecting") && this.socket) this.abandon(this.socket, "browser offline");
      return;
    }
    if (kind === "online") this.browserOffline = false;
    if (phase === "reconnecting" || phase === "offline") {
      this.clearRetry();
      this.connect();
    } else if (phase === "online") {
      // A laptop waking up often holds a socket that died while it slept; probe it now
      // rather than at the next ping.
      this.ping();
    }
  }

  // -- internals -------------------------------------------------------------------------

  setState(phase, retryAt = null, reason = this.state.reason) {
    this.state = { phase, retryAt, reason: phase === "session_gone" ? reason : null };
    this.onStateChange(this.state);
  }

  connect() {
    // One attempt at a time: a hint during an attempt must not open a second socket.
    if (this.socket) return;
    this.setState("connecting");
    const url = typeof this.url === "function" ? this.url() : this.url;
    let socket;
    try {
      socket = new this.WebSocket(url);
    } catch {
      // A malformed URL throws synchronously; treat it like a failed attempt.
      this.scheduleRetry();
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => this.opened(socket);
    socket.onmessage = (event) => this.received(socket, event.data);
    socket.onclose = (event) => this.closed(socket, event.code, event.reason ?? "");
    // The close event follows every error, so errors need no handling of their own.
    socket.onerror = () => {};
    this.connectTimer = this.timers.setTimeout(() => {
      this.connectTimer = null;
      if (this.socket === socket && socket.readyState === CONNECTING) this.abandon(socket);
    }, this.connectTimeoutMs);
  }

  opened(socket) {
    if (socket !== this.socket) return;
    this.clearTimer("connectTimer");
    this.setState("online");
    this.stableTimer = this.timers.setTimeout(() => {
      this.stableTimer = null;
      this.backoff.reset();
    }, this.stableAfterMs);
    this.schedulePing();
    this.onOpen((data) => this.send(data));
  }

  received(socket, data) {
    if (socket !== this.socket) return;
    // Any frame proves the path works, not just a pong.
    this.clearTimer("deadlineTimer");
    this.renewedUnproven = false;
    if (data === "pong") return;
    this.onMessage(data);
  }

  closed(socket, code, reason) {
    if (socket !== this.socket) return;
    this.detach();
    this.onClose(code, reason);
    if (code === CLOSE_AUTH) {
      this.sessionRefused(reason);
      return;
    }
    this.scheduleRetry();
  }

  sessionRefused(reason) {
    if (!this.renewSession || this.renewedUnproven) {
      this.setState("session_gone", null, reason);
      return;
    }
    this.setState("connecting");
    this.renewSession(reason).then(
      (renewed) => {
        if (this.state.phase !== "connecting" || this.socket) return; // stopped meanwhile
        if (renewed) {
          this.renewedUnproven = true;
          this.connect();
        } else {
          this.setState("session_gone", null, reason);
        }
      },
      () => {
        if (this.state.phase === "connecting" && !this.socket) this.scheduleRetry();
      },
    );
  }

  schedulePing() {
    this.pingTimer = this.timers.setTimeout(() => {
      this.pingTimer = null;
      this.ping();
      this.schedulePing();
    }, this.pingIntervalMs);
  }

  ping() {
    if (!this.send("ping")) return;
    // The deadline runs from the first unanswered ping; later pings do not extend it.
    if (this.deadlineTimer == null) {
      const socket = this.socket;
      this.deadlineTimer = this.timers.setTimeout(() => {
        this.deadlineTimer = null;
        if (this.socket === socket) this.abandon(socket);
      }, this.pongTimeoutMs);
    }
  }

  /** Gives up on a socket that stopped answering, and reconnects. */
  abandon(socket, reason = "no answer") {
    this.detach();
    this.onClose(1006, reason);
    try {
      socket.close();
    } catch {
      // Already closing; nothing more to do.
    }
    this.scheduleRetry();
  }

  scheduleRetry() {
    // While the browser says the network is gone, attempts would only fail (each one a console
    // error): wait for its `online` event, probing only now and then in case it is wrong.
    const backoff = this.backoff.nextDelayMs();
    const delay = this.browserOffline ? Math.max(backoff, this.offlineRetryMs) : backoff;
    const retryAt = this.now() + delay;
    this.setState(this.browserOffline ? "offline" : "reconnecting", retryAt);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  /** Forgets the current socket: its late events are ignored from here on. */
  detach() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    for (const name of ["pingTimer", "deadlineTimer", "connectTimer", "stableTimer"]) this.clearTimer(name);
  }

  dropSocket(code, reason) {
    const socket = this.socket;
    this.detach();
    if (socket) {
      try {
        socket.close(code, reason);
      } catch {
        // Closing twice is harmless.
      }
    }
  }

  clearRetry() {
    this.clearTimer("retryTimer");
  }

  clearTimer(name) {
    if (this[name] != null) {
      this.timers.clearTimeout(this[name]);
      this[name] = null;
    }
  }
}
