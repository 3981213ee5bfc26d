// "X is typing…": who is typing where, and when to tell the others that the person is.

const defaultTimers = { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (id) => clearTimeout(id) };

/**
 * Who is typing in each conversation, from incoming `typing` messages.
 *
 * The server broadcasts a `stop` itself when a `start` lapses, but a `stop` can be lost with a
 * dropped connection, so an indicator also lapses here if no `start` repeats it in time.
 */
export class TypingIndicators {
  /**
   * @param {object} [options]
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers]
   * @param {number} [options.lapseMs] a `start` not repeated for this long ends (6 s: the
   *   server's own lapse is 5 s, so its `stop` normally comes first)
   * @param {(conversation: number) => void} [options.onChange]
   */
  constructor({ timers = defaultTimers, lapseMs = 6000, onChange = () => {} } = {}) {
    this.timers = timers;
    this.lapseMs = lapseMs;
    this.onChange = onChange;
    /** @type {Map<number, Map<number, any>>} conversation → user → lapse timer */
    this.typing = new Map();
  }

  /** @param {{conversation: number, user: number, state: "start" | "stop"}} msg an incoming `typing` */
  apply(msg) {
    if (msg.state === "start") this.start(msg.conversation, msg.user);
    else this.stop(msg.conversation, msg.user);
  }

  /**
   * A message from `sender` arrived: they are done typing it.
   * @param {{conversation: number, sender: number}} message
   */
  noteMessage(message) {
    this.stop(message.conversation, message.sender);
  }

  /** @param {number} conversation @returns {number[]} user ids typing there, in the order they started */
  typers(conversation) {
    return [...(this.typing.get(conversation)?.keys() ?? [])];
  }

  /** Forgets everyone (the connection dropped: no `stop` would reach us). */
  clear() {
    for (const [conversation, users] of this.typing) {
      for (const timer of users.values()) this.timers.clearTimeout(timer);
      this.typing.delete(conversation);
      this.onChange(conversation);
    }
  }

  start(conversation, user) {
    let users = this.typing.get(conversation);
    if (!users) this.typing.set(conversation, (users = new Map()));
    const known = users.has(user);
    if (known) this.timers.clearTimeout(users.get(user));
    users.set(
      user,
      this.timers.setTimeout(() => this.stop(conversation, user), this.lapseMs),
    );
    if (!known) this.onChange(conversation);
  }

  stop(conversation, user) {
    const users = this.typing.get(conversation);
    if (!users || !users.has(user)) return;
    this.timers.clearTimeout(users.get(user));
    users.delete(user);
    if (users.size === 0) this.typing.delete(conversation);
    this.onChange(conversation);
  }
}

/**
 * When to send `typing` for the person's own input: a `start` at the first keystroke, repeated
 * at most every `repeatMs` while they keep typing (the server lapses a `start` after 5 s), and a
 * `stop` when they pause, clear the input, or switch away.
 */
export class TypingReporter {
  /**
   * @param {object} options
   * @param {(msg: object) => boolean} options.send
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers]
   * @param {() => number} [options.now]
   * @param {number} [options.repeatMs] least time between two `start`s (2.5 s)
   * @param {number} [options.idleMs] no keystroke for this long → `stop` (4 s)
   */
  constructor({ send, timers = defaultTimers, now = () => Date.now(), repeatMs = 2500, idleMs = 4000 }) {
    this.send = send;
    this.timers = timers;
    this.now = now;
    this.repeatMs = repeatMs;
    this.idleMs = idleMs;
    /** @type {Map<number, {lastStart: number, idle: any}>} */
    this.active = new Map();
  }

  /** A keystroke in the conversation's input (only ones that change the text). @param {number} conversation */
  input(conversation) {
    let a = this.active.get(conversation);
    const now = this.now();
    if (!a) {
      a = { lastStart: -Infinity, idle: null };
      this.active.set(conversation, a);
    }
    if (now - a.lastStart >= this.repeatMs && this.send({ type: "typing", conversation, state: "start" })) {
      a.lastStart = now;
    }
    if (a.idle != null) this.timers.clearTimeout(a.idle);
    a.idle = this.timers.setTimeout(() => this.cleared(conversation), this.idleMs);
  }

  /** The input was emptied, or the person stopped typing there. @param {number} conversation */
  cleared(conversation) {
    if (this.forget(conversation)) this.send({ type: "typing", conversation, state: "stop" });
  }

  /**
   * The message was sent. The server broadcasts the `stop` itself when a message arrives, so
   * none is sent; the next keystroke starts afresh.
   * @param {number} conversation
   */
  sent(conversation) {
    this.forget(conversation);
  }

  forget(conversation) {
    const a = this.active.get(conversation);
    if (!a) return false;
    if (a.idle != null) this.timers.clearTimeout(a.idle);
    this.active.delete(conversation);
    // Nothing to stop if no `start` ever went out (the socket was down).
    return a.lastStart !== -Infinity;
  }
}
