// Test doubles: a clock with timers that only move when told, and a scriptable WebSocket.

/** Fake time: `now`, `setTimeout` and `clearTimeout` driven by {@link FakeTime#advance}. */
export class FakeTime {
  constructor(start = 1_000_000) {
    this.current = start;
    this.nextId = 1;
    /** @type {Map<number, {at: number, fn: Function, order: number}>} */
    this.pending = new Map();
    this.now = () => this.current;
    this.timers = {
      setTimeout: (fn, ms) => {
        const id = this.nextId++;
        this.pending.set(id, { at: this.current + Math.max(0, ms), fn, order: id });
        return id;
      },
      clearTimeout: (id) => {
        this.pending.delete(id);
      },
    };
  }

  /** Runs every timer due within `ms`, in time order, including ones they schedule. */
  advance(ms) {
    const until = this.current + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.pending) {
        if (t.at <= until && (!next || t.at < next[1].at || (t.at === next[1].at && t.order < next[1].order))) next = [id, t];
      }
      if (!next) break;
      this.pending.delete(next[0]);
      this.current = next[1].at;
      next[1].fn();
    }
    this.current = until;
  }

  /** How many timers are waiting. */
  get timerCount() {
    return this.pending.size;
  }
}

/**
 * A WebSocket stand-in. Each constructed socket is recorded in `FakeSocket.all`; tests play the
 * server's part with `serverOpen()`, `serverSend()` and `serverClose()`.
 */
export class FakeSocket {
  /** @type {FakeSocket[]} */
  static all = [];

  static reset() {
    FakeSocket.all = [];
  }

  static get last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    /** frames the client sent */
    this.sent = [];
    this.closedByClient = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.all.push(this);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(data);
  }

  close(code = 1000, reason = "") {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }

  serverOpen() {
    this.readyState = 1;
    this.onopen?.({});
  }

  serverSend(data) {
    this.onmessage?.({ data: typeof data === "string" ? data : JSON.stringify(data) });
  }

  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }

  /** The JSON messages sent so far (the heartbeat left out). */
  json() {
    return this.sent.filter((d) => typeof d === "string" && d !== "ping").map((d) => JSON.parse(d));
  }

  pings() {
    return this.sent.filter((d) => d === "ping").length;
  }
}

/** A send function that records what it was given. */
export function recorder() {
  const frames = [];
  const send = (msg) => {
    frames.push(msg);
    return true;
  };
  return { frames, send };
}

/** A source of "random" numbers that replays `values` in a loop. */
export function sequence(...values) {
  let i = 0;
  return () => values[i++ % values.length];
}
