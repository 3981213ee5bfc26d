// Delivery and read markers: ticks on own messages, unread counts, and the receipts to send.

/**
 * A message's status as its sender sees it (docs/protocol.md, "A message's life").
 * @typedef {{state: "sending" | "failed" | "sent" | "delivered" | "read",
 *            deliveredTo: number, readBy: number, of: number}} Ticks
 */

/**
 * Markers of every member of every conversation, and the user's own reports.
 *
 * Markers are cumulative `seq`s that never go back, so every update takes the maximum: a
 * `receipt` delayed behind a newer `ready` must not undo it.
 */
export class Receipts {
  /**
   * @param {object} options
   * @param {number} options.me the user's id
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers]
   * @param {number} [options.reportDelayMs] how long reports gather before one is sent; the
   *   server merges them anyway, this only saves frames while messages stream in (a sync)
   * @param {(conversation: number) => void} [options.onChange] markers or unread changed
   */
  constructor({ me, timers, reportDelayMs = 300, onChange }) {
    this.me = me;
    this.timers = timers ?? { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (id) => clearTimeout(id) };
    this.reportDelayMs = reportDelayMs;
    this.onChange = onChange ?? (() => {});
    /** @type {Map<number, ConversationMarkers>} */
    this.conversations = new Map();
    /** @type {((msg: object) => boolean) | null} */
    this.sender = null;
    /** @type {Map<number, {received: number, read: number, timer: any}>} */
    this.reports = new Map();
  }

  /**
   * Takes a conversation as listed in `ready` or `conversations` (members, `lastSeq`, `unread`,
   * `markers`), or as pushed in a `conversation` update (no markers: the known ones stay).
   * @param {{id: number, members: {id: number}[], lastSeq: number, unread?: number,
   *          markers?: {user: number, delivered: number, read: number}[]}} info
   */
  loadConversation(info) {
    let c = this.conversations.get(info.id);
    if (!c) {
      c = new ConversationMarkers();
      this.conversations.set(info.id, c);
    }
    c.members = info.members.map((m) => m.id);
    c.lastSeq = Math.max(c.lastSeq, info.lastSeq ?? 0);
    for (const m of info.markers ?? []) this.moveMarker(c, m.user, m.delivered, m.read);
    if (info.unread != null) {
      // The server counted exactly (it knows who sent what); later changes are counted here
      // from that starting point.
      c.baseUnread = info.unread;
      c.baseLastSeq = info.lastSeq;
      c.othersAfterBase.clear();
    }
    this.onChange(info.id);
  }

  /** Forgets a conversation (left or removed). @param {number} conversation */
  dropConversation(conversation) {
    this.conversations.delete(conversation);
    const report = this.reports.get(conversation);
    if (report) this.timers.clearTimeout(report.timer);
    this.reports.delete(conversation);
  }

  /**
   * A `receipt` arrived (someone's markers moved, possibly the user's own on another device).
   * @param {{conversation: number, user: number, delivered: number, read: number}} receipt
   */
  applyReceipt(receipt) {
    const c = this.conversations.get(receipt.conversation);
    if (!c) return;
    this.moveMarker(c, receipt.user, receipt.delivered, receipt.read);
    this.onChange(receipt.conversation);
  }

  moveMarker(c, user, delivered, read) {
    c.move(user, delivered, read);
    if (user === this.me) {
      // What the server holds for this user, whichever device reported it: no need to
      // report it again from here. Taken from what the server said, not from the merged
      // marker: that one may already hold a `markRead` still waiting to be sent, and counting
      // it as reported would drop the report.
      c.reported.delivered = Math.max(c.reported.delivered, delivered ?? 0, read ?? 0);
      c.reported.read = Math.max(c.reported.read, read ?? 0);
    }
  }

  /**
   * A message arrived (live, replayed or acknowledged). Keeps `lastSeq` and the unread count
   * current, and, for someone else's message, reports it received.
   * @param {{conversation: number, seq: number, sender: number}} message
   */
  noteMessage(message) {
    const c = this.conversations.get(message.conversation);
    if (!c) return;
    c.lastSeq = Math.max(c.lastSeq, message.seq);
    // Own messages never count as unread (the server counts only others'), and sending does
    // not move the own read marker: that takes a `read`, as on the server.
    if (message.sender !== this.me) {
      if (message.seq > c.baseLastSeq) c.othersAfterBase.add(message.seq);
      this.markReceived(message.conversation, message.seq);
    }
    this.onChange(message.conversation);
  }

  /** @param {number} conversation @returns {number} messages from others after the own read marker */
  unread(conversation) {
    const c = this.conversations.get(conversation);
    if (!c) return 0;
    const read = c.marker(this.me).read;
    const fromBase = Math.min(c.baseUnread, Math.max(0, c.baseLastSeq - read));
    let later = 0;
    for (const seq of c.othersAfterBase) if (seq > read) later += 1;
    return fromBase + later;
  }

  /**
   * The ticks of one of the user's own messages.
   * @param {{conversation: number, seq?: number, pending?: boolean, failed?: string}} message
   * @returns {Ticks}
   */
  ticks(message) {
    const c = this.conversations.get(message.conversation);
    const others = c ? c.members.filter((id) => id !== this.me) : [];
    const of = others.length;
    if (message.failed) return { state: "failed", deliveredTo: 0, readBy: 0, of };
    if (message.pending || message.seq == null) return { state: "sending", deliveredTo: 0, readBy: 0, of };
    let deliveredTo = 0;
    let readBy = 0;
    for (const id of others) {
      const m = c.marker(id);
      if (m.delivered >= message.seq) deliveredTo += 1;
      if (m.read >= message.seq) readBy += 1;
    }
    let state = "sent";
    if (of > 0 && readBy === of) state = "read";
    else if (of > 0 && deliveredTo === of) state = "delivered";
    return { state, deliveredTo, readBy, of };
  }

  /**
   * The ticks as words: "sending", "sent", "delivered", "read"; in a group the partial counts,
   * e.g. "read by 2 of 3".
   * @param {Ticks} ticks
   * @returns {string}
   */
  static describe(ticks) {
    if (ticks.of > 1 && ticks.state !== "read" && ticks.state !== "sending" && ticks.state !== "failed") {
      if (ticks.readBy > 0) return `read by ${ticks.readBy} of ${ticks.of}`;
      if (ticks.deliveredTo > 0 && ticks.state !== "delivered") return `delivered to ${ticks.deliveredTo} of ${ticks.of}`;
    }
    return ticks.state;
  }

  // -- outgoing reports --------------------------------------------------------------------

  /**
   * The connection is ready: pending reports may go out.
   * @param {(msg: object) => boolean} send
   */
  attach(send) {
    this.sender = send;
    for (const conversation of this.reports.keys()) this.schedule(conversation);
  }

  /** The connection is gone: reports wait for the next {@link attach}. */
  detach() {
    this.sender = null;
    for (const report of this.reports.values()) {
      if (report.timer != null) this.timers.clearTimeout(report.timer);
      report.timer = null;
    }
  }

  /** Everything up to `seq` reached this device. @param {number} conversation @param {number} seq */
  markReceived(conversation, seq) {
    this.report(conversation, seq, 0);
  }

  /**
   * The person has seen everything up to `seq` (the conversation is open and scrolled to it).
   * The unread count drops at once; the `read` goes out shortly.
   * @param {number} conversation
   * @param {number} seq
   */
  markRead(conversation, seq) {
    const c = this.conversations.get(conversation);
    if (c) {
      c.move(this.me, seq, seq);
      this.onChange(conversation);
    }
    this.report(conversation, seq, seq);
  }

  report(conversation, received, read) {
    let r = this.reports.get(conversation);
    if (!r) {
      r = { received: 0, read: 0, timer: null };
      this.reports.set(conversation, r);
    }
    r.received = Math.max(r.received, received, read);
    r.read = Math.max(r.read, read);
    this.schedule(conversation);
  }

  schedule(conversation) {
    const r = this.reports.get(conversation);
    // At most one timer per conversation: later reports only raise the values it will send.
    if (!r || r.timer != null || !this.sender) return;
    r.timer = this.timers.setTimeout(() => {
      r.timer = null;
      this.flush(conversation);
    }, this.reportDelayMs);
  }

  flush(conversation) {
    const r = this.reports.get(conversation);
    if (!r || !this.sender) return;
    const c = this.conversations.get(conversation);
    // The server's copy of the own markers: what `ready` and `receipt`s said, or a report
    // already sent. Reporting less than that changes nothing, so it is not sent.
    const known = c ? c.reported : { delivered: 0, read: 0 };
    let ok = true;
    if (r.read > known.read) {
      ok = this.sender({ type: "read", conversation, seq: r.read });
      if (ok) {
        known.read = r.read;
        known.delivered = Math.max(known.delivered, r.read);
      }
    }
    // `read` implies `received`, so a separate `received` is needed only beyond it.
    if (ok && r.received > known.delivered) {
      ok = this.sender({ type: "received", conversation, seq: r.received });
      if (ok) known.delivered = r.received;
    }
    if (ok) this.reports.delete(conversation);
  }
}

/** One conversation's markers. */
class ConversationMarkers {
  constructor() {
    /** @type {number[]} */
    this.members = [];
    this.lastSeq = 0;
    /** @type {Map<number, {delivered: number, read: number}>} */
    this.markers = new Map();
    /** The own markers as the server has them (from `ready`, `receipt`s and sent reports). */
    this.reported = { delivered: 0, read: 0 };
    this.baseUnread = 0;
    this.baseLastSeq = 0;
    /** @type {Set<number>} seqs of others' messages after `baseLastSeq` */
    this.othersAfterBase = new Set();
  }

  marker(user) {
    return this.markers.get(user) ?? { delivered: 0, read: 0 };
  }

  move(user, delivered, read) {
    const m = this.marker(user);
    const next = { delivered: Math.max(m.delivered, delivered ?? 0, read ?? 0), read: Math.max(m.read, read ?? 0) };
    this.markers.set(user, next);
    return next;
  }
}
