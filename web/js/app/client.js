// The chat client behind the page: one connection, the outbox, the timelines and everything
// the server pushes, routed to the modules that keep it. No DOM here: the page renders what
// this holds when told something changed, and the same code runs under `node --test`.

import { Connection } from "../connection.js";
import { Backoff } from "../backoff.js";
import { Outbox } from "../outbox.js";
import { Timelines } from "../timeline.js";
import { Cursors } from "../cursors.js";
import { Receipts } from "../receipts.js";
import { TypingIndicators, TypingReporter } from "../typing.js";
import { Presence } from "../presence.js";
import { Uploads } from "./uploads.js";

/** Messages per history page (the first screen and each step back). */
export const PAGE_SIZE = 50;

/** How long after `ready` the markers are read once more (see scheduleMarkerRefresh). */
const MARKER_REFRESH_MS = 2000;

/**
 * @typedef {{id: number, kind: "group" | "direct", name: string, owner?: number | null,
 *            members: {id: number, username: string}[], lastSeq: number,
 *            lastMessage?: object | null, unread?: number, markers?: object[]}} Conversation
 */

/**
 * What changed, for the page to redraw: `connection`, `conversations`, `messages` (with the
 * conversation), `history` (conversation, how many older ones arrived), `receipts`, `typing`,
 * `presence`, `uploads`, `ready`, `synced`, `session_gone`, `removed` (conversation).
 * @typedef {(kind: string, detail?: any) => void} Listener
 */

export class ChatClient {
  /**
   * @param {object} options
   * @param {import("./session.js").Session} options.session signed in
   * @param {{getItem: Function, setItem: Function, removeItem: Function}} options.storage
   * @param {new (url: string) => any} options.WebSocket
   * @param {string | (() => string)} options.url the `/ws` URL
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers]
   * @param {() => number} [options.now]
   * @param {() => number} [options.random]
   * @param {(blob: Blob) => Promise<string | undefined>} [options.digest]
   * @param {() => string} [options.newId] localIds (tests)
   */
  constructor(options) {
    this.session = options.session;
    this.me = options.session.user.id;
    this.now = options.now ?? (() => Date.now());
    const timers = options.timers;
    /** @type {Set<Listener>} */
    this.listeners = new Set();
    /** @type {Map<number, Conversation>} */
    this.conversations = new Map();
    /** @type {Map<number, string>} user id → username */
    this.names = new Map([[this.me, options.session.user.username]]);
    /** The conversation on screen, if any. */
    this.open = null;
    /** Whether the open conversation is scrolled to its newest message and visible. */
    this.reading = false;
    this.authed = false;
    this.synced = false;
    this.epoch = null;
    this.refCounter = 0;
    /** conversation → ref of its history request in flight */
    this.historyInFlight = new Map();

    const sendJson = (msg) => this.authed && this.connection.send(JSON.stringify(msg));
    this.sendJson = sendJson;
    this.outbox = new Outbox({ storage: options.storage, userId: this.me, timers, now: this.now, newId: options.newId });
    this.timelines = new Timelines(this.me);
    this.cursors = new Cursors({ storage: options.storage, userId: this.me });
    this.receipts = new Receipts({ me: this.me, timers, onChange: (c) => this.emit("receipts", c) });
    this.typingIn = new TypingIndicators({ timers, onChange: (c) => this.emit("typing", c) });
    this.typingOut = new TypingReporter({ send: sendJson, timers, now: this.now });
    this.presence = new Presence({ onChange: (u) => this.emit("presence", u) });
    this.uploads = new Uploads({
      sendJson,
      sendBinary: (frame) => this.authed && this.connection.send(frame),
      bufferedAmount: () => this.connection.socket?.bufferedAmount ?? 0,
      timers,
      now: this.now,
      digest: options.digest,
      onChange: (u) => this.emit("uploads", u.conversation),
    });

    this.connection = new Connection({
      url: options.url,
      WebSocket: options.WebSocket,
      timers,
      now: this.now,
      backoff: new Backoff({ random: options.random ?? Math.random }),
      onOpen: (send) => this.authenticate(send),
      onMessage: (text) => this.received(text),
      onClose: () => this.disconnected(),
      onStateChange: (state) => {
        this.emit("connection", state);
        if (state.phase === "session_gone") this.emit("session_gone", state.reason);
      },
      renewSession: () => this.session.renew(),
    });

    // What the outbox still holds from before a reload shows at once, as "sending".
    for (const entry of this.outbox.entries()) this.timelines.get(entry.conversation).addPending(entry);
  }

  // -- lifecycle ---------------------------------------------------------------------------

  /** @param {Listener} listener @returns {() => void} unsubscribe */
  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(kind, detail) {
    for (const listener of this.listeners) listener(kind, detail);
  }

  start() {
    this.connection.start();
  }

  /** Logout or page teardown: closes the socket for good. */
  stop() {
    this.connection.stop();
    this.disconnected();
  }

  /** @param {"online" | "offline" | "visible"} kind a hint from the browser */
  hint(kind) {
    this.connection.hint(kind);
  }

  authenticate(send) {
    const fallback = this.session.data?.accessToken;
    const auth = (token) => send(JSON.stringify({ type: "auth", token }));
    this.session.accessToken().then(
      (token) => {
        if (token) {
          auth(token);
        } else {
          this.connection.stop();
          this.emit("session_gone", "signed out");
        }
      },
      // Renewal failed on the network: try the token held; a 4001 renews again.
      () => fallback && auth(fallback),
    );
  }

  disconnected() {
    this.authed = false;
    this.synced = false;
    this.outbox.detach();
    this.receipts.detach();
    this.uploads.detach();
    this.typingIn.clear();
    this.historyInFlight.clear();
  }

  // -- incoming ----------------------------------------------------------------------------

  received(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    switch (msg.type) {
      case "ready":
        return this.onReady(msg);
      case "sync_batch":
        for (const m of msg.messages) this.receive(m);
        return this.emit("messages", msg.conversation);
      case "synced":
        this.cursors.applySynced(msg.cursors);
        this.synced = true;
        return this.emit("synced");
      case "new_message":
        this.receive(msg);
        return this.emit("messages", msg.conversation);
      case "ack":
        return this.onAck(msg);
      case "history":
        return this.onHistory(msg);
      case "receipt":
        return this.receipts.applyReceipt(msg);
      case "typing":
        if (msg.user !== this.me) this.typingIn.apply(msg);
        return;
      case "presence":
        return this.presence.apply(msg);
      case "user_list":
        for (const m of msg.members ?? []) this.names.set(m.id, m.username);
        this.presence.applyUserList(msg);
        return;
      case "conversation":
        this.upsert(msg.conversation, { pushed: true });
        return;
      case "conversations":
        if (msg.ref != null && msg.ref === this.markerRefresh) {
          // Only the markers: they only ever move forward, so taking them cannot undo anything.
          for (const c of msg.conversations) {
            if (!this.conversations.has(c.id)) continue;
            this.receipts.loadConversation({ id: c.id, members: c.members, lastSeq: c.lastSeq, markers: c.markers });
          }
          return;
        }
        for (const c of msg.conversations) this.upsert(c);
        return;
      case "conversation_removed":
        return this.removeConversation(msg.conversation);
      case "ok":
        return;
      case "file_ready":
        this.uploads.handleReady(msg);
        return;
      case "error":
        return this.onError(msg);
      default:
    }
  }

  onReady(msg) {
    const again = this.authed; // a fresh `auth` on the same socket (token renewed)
    this.authed = true;
    this.me = msg.user.id;
    this.names.set(msg.user.id, msg.user.username);
    if (this.cursors.adoptEpoch(msg.epoch)) {
      // Another database: nothing cached from the old one means anything here.
      this.timelines.clear();
      for (const entry of this.outbox.entries()) this.timelines.get(entry.conversation).addPending(entry);
    }
    this.epoch = msg.epoch;
    const listed = new Set(msg.conversations.map((c) => c.id));
    for (const id of [...this.conversations.keys()]) if (!listed.has(id)) this.forget(id);
    for (const c of msg.conversations) this.upsert(c);
    this.emit("conversations");
    if (!again) {
      this.presence.reset();
      this.synced = false;
      this.sendJson(this.cursors.syncRequest([...listed], "sync"));
      this.outbox.attach(this.sendJson);
      this.receipts.attach(this.sendJson);
      this.uploads.attach();
      if (this.open != null && listed.has(this.open)) this.watchOpen();
      this.scheduleMarkerRefresh();
    }
    this.emit("ready", { again });
  }

  /**
   * Asks for the conversation list once more, shortly after `ready`, and takes its markers.
   *
   * A defensive second look: the markers in `ready` are a snapshot, and a `receipt` fanned out
   * while this socket was still authenticating is not repeated to it. Should the snapshot
   * miss a marker that moved in that instant, a tick would stay at "delivered" until the next
   * receipt; one request per connection rules that out. Markers only move forward, so taking
   * them twice is harmless.
   */
  scheduleMarkerRefresh() {
    const timers = this.outbox.timers;
    if (this.markerTimer != null) timers.clearTimeout(this.markerTimer);
    this.markerTimer = timers.setTimeout(() => {
      this.markerTimer = null;
      if (!this.authed) return;
      const ref = `c${++this.refCounter}`;
      this.markerRefresh = ref;
      this.sendJson({ type: "conversations", ref });
    }, MARKER_REFRESH_MS);
  }

  /** A message from any source but history: into its timeline, cursor, receipts and list. */
  receive(m) {
    const conversation = this.conversations.get(m.conversation);
    if (!conversation) return;
    if (m.senderName) this.names.set(m.sender, m.senderName);
    this.timelines.get(m.conversation).add(m);
    this.outbox.handleMessage(m, this.me);
    this.cursors.observe(m.conversation, m.seq);
    this.receipts.noteMessage(m);
    this.typingIn.noteMessage(m);
    if (!conversation.lastMessage || conversation.lastMessage.seq <= m.seq) {
      conversation.lastMessage = m;
      conversation.lastSeq = Math.max(conversation.lastSeq ?? 0, m.seq);
      this.emit("conversations");
    }
    if (m.conversation === this.open) this.readIfSeen();
  }

  onAck(ack) {
    const timeline = this.timelines.get(ack.conversation);
    const upload = this.uploads.handleAck(ack);
    const confirmed = timeline.applyAck(ack);
    if (upload && confirmed?.file) confirmed.file = { ...confirmed.file, id: upload.fileId };
    this.outbox.handleAck(ack);
    this.cursors.observe(ack.conversation, ack.seq);
    this.receipts.noteMessage({ conversation: ack.conversation, seq: ack.seq, sender: this.me });
    const conversation = this.conversations.get(ack.conversation);
    const message = confirmed ?? timeline.confirmed.find((m) => m.seq === ack.seq);
    if (conversation && message && (!conversation.lastMessage || conversation.lastMessage.seq <= ack.seq)) {
      conversation.lastMessage = { ...message, senderName: this.names.get(this.me) };
      conversation.lastSeq = Math.max(conversation.lastSeq ?? 0, ack.seq);
      this.emit("conversations");
    }
    this.emit("messages", ack.conversation);
  }

  onHistory(msg) {
    if (this.historyInFlight.get(msg.conversation) === msg.ref) this.historyInFlight.delete(msg.conversation);
    if (!this.conversations.has(msg.conversation)) return;
    for (const m of msg.messages) if (m.senderName) this.names.set(m.sender, m.senderName);
    const added = this.timelines.get(msg.conversation).prependHistory(msg.messages, msg.hasMore);
    this.emit("history", { conversation: msg.conversation, added });
    if (msg.conversation === this.open) this.readIfSeen();
  }

  onError(msg) {
    if (msg.code === "token_expired" && msg.ref == null) {
      // The token ran out on an open socket: renew it and authenticate again on the same one.
      this.session.renew().then(
        (ok) => {
          if (ok) this.connection.send(JSON.stringify({ type: "auth", token: this.session.data.accessToken }));
          else this.emit("session_gone", "signed out");
        },
        () => {},
      );
      return;
    }
    if (msg.ref != null && [...this.historyInFlight.values()].includes(msg.ref)) {
      for (const [c, ref] of this.historyInFlight) if (ref === msg.ref) this.historyInFlight.delete(c);
      return;
    }
    if (this.uploads.handleError(msg)) return;
    const outcome = this.outbox.handleError(msg);
    if (outcome?.final) {
      this.timelines.get(outcome.entry.conversation).markFailed(outcome.entry.localId, outcome.entry.error);
      this.emit("messages", outcome.entry.conversation);
    }
  }

  // -- conversations -----------------------------------------------------------------------

  /**
   * Adds or updates a conversation from `ready`, a list, a REST answer or a push.
   * @param {Conversation} info
   * @param {{pushed?: boolean}} [options] a push carries no per-viewer fields (unread, markers)
   */
  upsert(info, { pushed = false } = {}) {
    const known = this.conversations.get(info.id);
    for (const m of info.members ?? []) this.names.set(m.id, m.username);
    const merged = { ...(known ?? {}), ...info };
    if (known?.lastMessage && (!info.lastMessage || info.lastMessage.seq < known.lastMessage.seq)) merged.lastMessage = known.lastMessage;
    if (pushed && known) {
      const { unread: _u, markers: _m, ...rest } = info;
      this.receipts.loadConversation({ ...rest, lastSeq: merged.lastSeq ?? 0 });
    } else {
      this.receipts.loadConversation({ ...info, unread: info.unread ?? (known ? undefined : 0) });
    }
    this.conversations.set(info.id, merged);
    this.emit("conversations");
  }

  removeConversation(id) {
    this.forget(id);
    this.emit("conversations");
    this.emit("removed", id);
  }

  forget(id) {
    this.conversations.delete(id);
    this.timelines.drop(id);
    this.cursors.forget(id);
    this.receipts.dropConversation(id);
    if (this.open === id) this.open = null;
  }

  /** @returns {Conversation[]} newest activity first */
  conversationList() {
    const activity = (c) => c.lastMessage?.ts ?? 0;
    return [...this.conversations.values()].sort((a, b) => activity(b) - activity(a) || b.id - a.id);
  }

  /** @param {number} id */
  unread(id) {
    return this.receipts.unread(id);
  }

  totalUnread() {
    let n = 0;
    for (const id of this.conversations.keys()) n += this.unread(id);
    return n;
  }

  /** @param {Conversation} c @returns {{id: number, username: string} | null} the other person of a direct chat */
  peer(c) {
    if (c.kind !== "direct") return null;
    return c.members.find((m) => m.id !== this.me) ?? null;
  }

  /** @param {number} user */
  nameOf(user) {
    return this.names.get(user) ?? `user ${user}`;
  }

  /** Creates a group. @param {string} name @param {string[]} members usernames */
  async createGroup(name, members) {
    const c = await this.session.api("/api/conversations", { method: "POST", body: { kind: "group", name, members } });
    this.upsert(c);
    return c;
  }

  /** Opens (or creates) the direct chat with someone. @param {string} username */
  async createDirect(username) {
    const c = await this.session.api("/api/conversations", { method: "POST", body: { kind: "direct", with: username } });
    this.upsert(c);
    return c;
  }

  /** @param {number} conversation @param {string} username */
  async addMember(conversation, username) {
    const c = await this.session.api(`/api/conversations/${conversation}/members`, { method: "POST", body: { username } });
    this.upsert(c, { pushed: true });
    return c;
  }

  /** Leaves a group. @param {number} conversation */
  async leave(conversation) {
    const me = this.names.get(this.me);
    await this.session.api(`/api/conversations/${conversation}/members/${encodeURIComponent(me)}`, { method: "DELETE" });
    this.removeConversation(conversation);
  }

  /** @param {string} prefix @returns {Promise<{id: number, username: string}[]>} */
  async searchUsers(prefix) {
    const answer = await this.session.api(`/api/users?prefix=${encodeURIComponent(prefix)}&limit=8`);
    return answer.users.filter((u) => u.id !== this.me);
  }

  // -- the open conversation ---------------------------------------------------------------

  /** @param {number | null} id the conversation on screen */
  setOpen(id) {
    if (this.open != null && this.open !== id) this.typingOut.cleared(this.open);
    this.open = id != null && this.conversations.has(id) ? id : null;
    this.reading = false;
    if (this.open != null && this.authed) this.watchOpen();
  }

  /** Presence of the open conversation's members, and its newest page if none is held. */
  watchOpen() {
    const id = this.open;
    const request = this.presence.userListRequest(id, `u${++this.refCounter}`);
    if (request) this.sendJson(request);
    const timeline = this.timelines.get(id);
    if (timeline.confirmed.length < PAGE_SIZE && timeline.hasMore) this.loadOlder(id);
  }

  /**
   * Asks for the page before the oldest message held.
   * @param {number} conversation
   * @returns {boolean} whether a request went out (false: in flight, nothing older, or offline)
   */
  loadOlder(conversation) {
    if (this.historyInFlight.has(conversation) || !this.authed) return false;
    const ref = `h${++this.refCounter}`;
    const request = this.timelines.get(conversation).historyRequest(PAGE_SIZE, ref);
    if (!request) return false;
    if (!this.sendJson(request)) return false;
    this.historyInFlight.set(conversation, ref);
    return true;
  }

  /** @param {number} conversation */
  loadingOlder(conversation) {
    return this.historyInFlight.has(conversation);
  }

  /**
   * The view says whether the newest message of the open conversation is on screen and the
   * page is visible; if so, everything in it is read.
   * @param {boolean} reading
   */
  setReading(reading) {
    this.reading = reading;
    this.readIfSeen();
  }

  readIfSeen() {
    if (!this.reading || this.open == null) return;
    const seq = this.timelines.get(this.open).newestSeq();
    if (seq == null) return;
    const c = this.receipts.conversations.get(this.open);
    if (c && c.marker(this.me).read >= seq) return;
    this.receipts.markRead(this.open, seq);
  }

  // -- sending -----------------------------------------------------------------------------

  /** @param {number} conversation @param {string} body */
  send(conversation, body) {
    const entry = this.outbox.add(conversation, body);
    this.timelines.get(conversation).addPending(entry);
    this.typingOut.sent(conversation);
    this.emit("messages", conversation);
    return entry;
  }

  /** A failed message goes again. @param {number} conversation @param {string} localId */
  retry(conversation, localId) {
    const timeline = this.timelines.get(conversation);
    timeline.removePending(localId);
    const entry = this.outbox.get(localId);
    if (entry) {
      timeline.addPending({ ...entry, state: "pending" });
      this.outbox.retry(localId);
    }
    const upload = this.uploads.get(localId);
    if (upload) {
      timeline.addPending({ localId, body: upload.name, createdAt: upload.createdAt, kind: "file", file: { name: upload.name, size: upload.size, mime: upload.mime } });
      this.uploads.retry(localId);
    }
    this.emit("messages", conversation);
  }

  /** A failed message is dropped. @param {number} conversation @param {string} localId */
  discard(conversation, localId) {
    this.outbox.discard(localId);
    this.uploads.cancel(localId);
    this.timelines.get(conversation).removePending(localId);
    this.emit("messages", conversation);
  }

  /** @param {number} conversation @param {Blob & {name?: string}} file */
  async sendFile(conversation, file) {
    const promise = this.uploads.add(conversation, file);
    // add() registers the upload synchronously before its first await.
    const upload = [...this.uploads.items.values()].at(-1);
    this.timelines.get(conversation).addPending({
      localId: upload.uploadId,
      body: upload.name,
      createdAt: upload.createdAt,
      kind: "file",
      file: { name: upload.name, size: upload.size, mime: upload.mime },
    });
    this.typingOut.sent(conversation);
    this.emit("messages", conversation);
    await promise;
    return upload;
  }

  /** A keystroke that changed the composer's text. @param {number} conversation @param {string} text */
  typing(conversation, text) {
    if (text.trim() === "") this.typingOut.cleared(conversation);
    else this.typingOut.input(conversation);
  }

  /**
   * A message's ticks, for the view: `sending`, `sent`, `delivered`, `read`, `failed` and the
   * counts in a group.
   * @param {object} message
   */
  ticks(message) {
    if (message.pending && message.failed == null) {
      const upload = this.uploads.get(message.localId);
      if (upload?.state === "failed") return { state: "failed", deliveredTo: 0, readBy: 0, of: 0 };
    }
    return this.receipts.ticks(message);
  }
}
