// The messages of one conversation as the page shows them.

/**
 * A message as the server sends it (`new_message`, `sync_batch`, `history`), or an own message
 * not acknowledged yet (no `id`/`seq`, `pending: true`).
 * @typedef {{conversation: number, id?: number, seq?: number, ts?: number, sender: number,
 *            senderName?: string, kind?: string, body: string, localId?: string,
 *            pending?: boolean, failed?: string}} Message
 */

/**
 * One conversation's messages: confirmed ones ordered by `seq` without duplicates, then the
 * own messages still waiting for their ack in the order they were written.
 *
 * The same message can reach a client several ways (live, replayed by `sync`, in a history
 * page, as the ack of its own send, from another tab's send), and live ones may arrive before
 * older replayed ones, so every path goes through the same de-duplication by `seq` (unique per
 * conversation, and the id's stand-in) and by `localId` for the own pending ones.
 */
export class Timeline {
  /**
   * @param {number} conversation
   * @param {number} me the user's id (own pending messages are matched by `localId` only when
   *   the confirmed message is from this user)
   */
  constructor(conversation, me) {
    this.conversation = conversation;
    this.me = me;
    /** @type {Message[]} confirmed, ascending `seq` */
    this.confirmed = [];
    /** @type {Set<number>} ids of `confirmed` */
    this.ids = new Set();
    /** @type {Message[]} own, not acknowledged yet */
    this.pending = [];
    /** Whether older messages exist before the first one held (unknown until a page says). */
    this.hasMore = true;
  }

  /** @returns {Message[]} what to render, top to bottom */
  messages() {
    return [...this.confirmed, ...this.pending];
  }

  /** @returns {number | null} the oldest `seq` held, for the next history request */
  oldestSeq() {
    return this.confirmed.length ? this.confirmed[0].seq : null;
  }

  /** @returns {number | null} */
  newestSeq() {
    return this.confirmed.length ? this.confirmed[this.confirmed.length - 1].seq : null;
  }

  /**
   * Shows an own message that is in the outbox but not acknowledged (or a file still uploading:
   * `kind: "file"` with its `file`).
   * @param {{localId: string, body: string, createdAt?: number, state?: string, error?: string,
   *          kind?: string, file?: object}} entry
   */
  addPending(entry) {
    if (this.pending.some((m) => m.localId === entry.localId)) return;
    if (this.confirmed.some((m) => m.localId === entry.localId && m.sender === this.me)) return;
    this.pending.push({
      conversation: this.conversation,
      sender: this.me,
      body: entry.body,
      localId: entry.localId,
      ts: entry.createdAt,
      pending: true,
      ...(entry.kind ? { kind: entry.kind } : {}),
      ...(entry.file ? { file: entry.file } : {}),
      ...(entry.state === "failed" ? { failed: entry.error ?? "failed" } : {}),
    });
  }

  /** Marks an own pending message failed (a final `error`). @param {string} localId @param {string} code */
  markFailed(localId, code) {
    this.pending = this.pending.map((m) => (m.localId === localId ? { ...m, failed: code } : m));
  }

  /** Removes an own pending message (discarded). @param {string} localId */
  removePending(localId) {
    this.pending = this.pending.filter((m) => m.localId !== localId);
  }

  /**
   * The `ack` of an own send: the pending message becomes confirmed.
   * @param {{localId: string, id: number, seq: number, ts: number}} ack
   * @returns {Message | null} the confirmed message, null when the ack changed nothing
   *   (duplicate, or the message was confirmed another way first)
   */
  applyAck(ack) {
    const index = this.pending.findIndex((m) => m.localId === ack.localId);
    if (index < 0) return null;
    const { pending: _p, failed: _f, ...base } = this.pending[index];
    return this.add({ ...base, id: ack.id, seq: ack.seq, ts: ack.ts, kind: base.kind ?? "text" });
  }

  /**
   * Adds a confirmed message from any source.
   * @param {Message} message
   * @returns {Message | null} the message if it was new to the timeline, else null
   */
  add(message) {
    if (message.localId != null && message.sender === this.me) {
      this.pending = this.pending.filter((m) => m.localId !== message.localId);
    }
    if (message.id != null && this.ids.has(message.id)) return null;
    const at = this.insertionPoint(message.seq);
    if (at < this.confirmed.length && this.confirmed[at].seq === message.seq) return null;
    this.confirmed.splice(at, 0, message);
    if (message.id != null) this.ids.add(message.id);
    return message;
  }

  /**
   * Adds a batch (a `sync_batch`, or live messages).
   * @param {Message[]} messages
   * @returns {Message[]} those that were new
   */
  addAll(messages) {
    const added = [];
    for (const m of messages) if (this.add(m)) added.push(m);
    return added;
  }

  /**
   * Adds a `history` page (older messages, ascending).
   * @param {Message[]} messages
   * @param {boolean} hasMore the page's `hasMore`
   * @returns {number} how many were new (the view keeps its scroll position by that many rows)
   */
  prependHistory(messages, hasMore) {
    const added = this.addAll(messages).length;
    this.hasMore = hasMore;
    return added;
  }

  /**
   * The request for the page before what is held.
   * @param {number} [limit]
   * @param {string} [ref]
   * @returns {object | null} null when nothing older exists
   */
  historyRequest(limit = 50, ref) {
    if (!this.hasMore) return null;
    const before = this.oldestSeq();
    if (before === 1) return null;
    const request = { type: "history", conversation: this.conversation, limit };
    if (before != null) request.before = before;
    if (ref != null) request.ref = ref;
    return request;
  }

  insertionPoint(seq) {
    // Binary search: live messages almost always land at the end, history pages at the start.
    let lo = 0;
    let hi = this.confirmed.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.confirmed[mid].seq < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * All conversations' timelines, created on first use.
 */
export class Timelines {
  /** @param {number} me the user's id */
  constructor(me) {
    this.me = me;
    /** @type {Map<number, Timeline>} */
    this.byConversation = new Map();
  }

  /** @param {number} conversation @returns {Timeline} */
  get(conversation) {
    let timeline = this.byConversation.get(conversation);
    if (!timeline) {
      timeline = new Timeline(conversation, this.me);
      this.byConversation.set(conversation, timeline);
    }
    return timeline;
  }

  /** Forgets a conversation (left, removed, or an epoch change). @param {number} conversation */
  drop(conversation) {
    this.byConversation.delete(conversation);
  }

  /** Forgets everything (epoch change). */
  clear() {
    this.byConversation.clear();
  }
}
