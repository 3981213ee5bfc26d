// Messages the person sent that the server has not acknowledged yet.

import { readJson, writeJson } from "./storage.js";
import { randomId } from "./ids.js";

/**
 * Error codes after which re-sending the same message can never succeed: the entry is marked
 * failed (kept, so the person sees it and can edit, retry or discard it).
 */
export const FINAL_SEND_ERRORS = new Set(["not_member", "not_found", "body_too_long", "invalid", "malformed"]);

/**
 * One unacknowledged message.
 * @typedef {{localId: string, conversation: number, body: string, createdAt: number,
 *            state: "pending" | "failed", error?: string}} OutboxEntry
 */

/**
 * The outbox: every message is written to storage *before* it is sent, and re-sent with the
 * same `localId` after each (re)connect or reload until its `ack` arrives. The server stores a
 * `localId` once and answers a repeat with the original ack, which is what makes blind re-sending
 * safe.
 *
 * Each change re-reads storage before writing it back, so two tabs sharing `localStorage` do not
 * erase each other's entries.
 */
export class Outbox {
  /**
   * @param {object} options
   * @param {{getItem: Function, setItem: Function, removeItem: Function}} options.storage
   * @param {number | string} options.userId entries are kept per user
   * @param {() => string} [options.newId] `localId` generator
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers]
   * @param {() => number} [options.now]
   * @param {number} [options.maxInFlight] unacknowledged sends at once; a long outbox sent in
   *   one go would run into the server's rate limit, and too many refusals close the socket
   * @param {() => void} [options.onChange] after every change to the entries
   */
  constructor(options) {
    this.storage = options.storage;
    this.key = `chatgroup.outbox.${options.userId}`;
    this.newId = options.newId ?? (() => randomId("m-"));
    this.timers = options.timers ?? { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (id) => clearTimeout(id) };
    this.now = options.now ?? (() => Date.now());
    this.maxInFlight = options.maxInFlight ?? 16;
    this.onChange = options.onChange ?? (() => {});
    /** @type {((msg: object) => boolean) | null} */
    this.sender = null;
    /** localIds sent on the current connection and not answered yet */
    this.inFlight = new Set();
    this.pauseTimer = null;
  }

  /** @returns {OutboxEntry[]} the entries, oldest first */
  entries() {
    const list = readJson(this.storage, this.key, []);
    return Array.isArray(list) ? list : [];
  }

  /** @param {string} localId @returns {OutboxEntry | undefined} */
  get(localId) {
    return this.entries().find((e) => e.localId === localId);
  }

  /**
   * Queues a message: persists it, then sends it if connected.
   * @param {number} conversation
   * @param {string} body
   * @returns {OutboxEntry} the entry (show it at once as "sending")
   */
  add(conversation, body) {
    const entry = { localId: this.newId(), conversation, body, createdAt: this.now(), state: "pending" };
    // Written first: if the tab dies between here and the send, the reload re-sends it.
    this.update((list) => [...list, entry]);
    this.pump();
    return entry;
  }

  /**
   * The connection is ready (after `ready`, not merely open: a `send` before `auth` is
   * refused). Re-sends every pending entry.
   * @param {(msg: object) => boolean} send returns false when the frame could not be sent
   */
  attach(send) {
    this.sender = send;
    this.inFlight.clear();
    this.pump();
  }

  /** The connection is gone; nothing is sent until the next {@link attach}. */
  detach() {
    this.sender = null;
    this.inFlight.clear();
    this.clearPause();
  }

  /**
   * An `ack` arrived. Removes the entry.
   * @param {{localId: string}} ack
   * @returns {OutboxEntry | null} the entry, or null if it was not (or no longer) queued, as
   *   for a duplicate ack
   */
  handleAck(ack) {
    return this.remove(ack.localId);
  }

  /**
   * A message arrived (live or replayed). If it is one of ours still queued (sent from another
   * tab sharing this storage, or committed before its ack was lost), it is done.
   * @param {{sender: number, localId?: string}} message
   * @param {number} me the user's id
   * @returns {OutboxEntry | null}
   */
  handleMessage(message, me) {
    if (message.sender !== me || !message.localId) return null;
    return this.remove(message.localId);
  }

  /**
   * An `error` arrived. A send's error carries its `localId` as `ref`.
   * @param {{code: string, ref?: string, retryAfterMs?: number}} error
   * @returns {{entry: OutboxEntry, final: boolean} | null} null when it is not about a queued
   *   message
   */
  handleError(error) {
    const entry = error.ref == null ? undefined : this.get(String(error.ref));
    if (!entry || entry.state !== "pending") return null;
    this.inFlight.delete(entry.localId);
    if (FINAL_SEND_ERRORS.has(error.code)) {
      const failed = { ...entry, state: "failed", error: error.code };
      this.update((list) => list.map((e) => (e.localId === entry.localId ? failed : e)));
      this.pump();
      return { entry: failed, final: true };
    }
    // rate_limited (and internal/unavailable): nothing was stored; the same localId goes again
    // after the wait. The whole outbox pauses, so the retry does not overtake later messages
    // and the refusals do not pile up.
    this.pause(error.code === "rate_limited" ? error.retryAfterMs ?? 1000 : 2000);
    return { entry, final: false };
  }

  /** Puts a failed entry back in the queue (the person pressed "retry"). @param {string} localId */
  retry(localId) {
    this.update((list) =>
      list.map((e) => (e.localId === localId ? { localId: e.localId, conversation: e.conversation, body: e.body, createdAt: e.createdAt, state: "pending" } : e)),
    );
    this.pump();
  }

  /** Drops an entry (the person discarded a failed message). @param {string} localId */
  discard(localId) {
    this.remove(localId);
  }

  // -- internals -------------------------------------------------------------------------

  pump() {
    if (!this.sender || this.pauseTimer != null) return;
    for (const entry of this.entries()) {
      if (this.inFlight.size >= this.maxInFlight) break;
      if (entry.state !== "pending" || this.inFlight.has(entry.localId)) continue;
      const frame = { type: "send", conversation: entry.conversation, localId: entry.localId, body: entry.body };
      if (!this.sender(frame)) return; // the socket went away; attach() will start over
      this.inFlight.add(entry.localId);
    }
  }

  pause(ms) {
    this.clearPause();
    // Everything in flight may have been refused too; it is all sent again after the pause
    // (a duplicate is answered with the original ack, so over-sending is harmless).
    this.inFlight.clear();
    this.pauseTimer = this.timers.setTimeout(() => {
      this.pauseTimer = null;
      this.pump();
    }, Math.max(1, ms));
  }

  clearPause() {
    if (this.pauseTimer != null) {
      this.timers.clearTimeout(this.pauseTimer);
      this.pauseTimer = null;
    }
  }

  remove(localId) {
    const removed = this.get(localId);
    if (!removed) return null;
    this.update((list) => list.filter((e) => e.localId !== localId));
    this.inFlight.delete(localId);
    this.pump();
    return removed;
  }

  update(change) {
    const before = this.entries();
    const after = change(before);
    if (after.length === 0) this.storage.removeItem(this.key);
    else writeJson(this.storage, this.key, after);
    this.onChange();
  }
}
