// Per-conversation sync cursors: the last `seq` the client holds without a gap.

import { readJson, writeJson } from "./storage.js";

/**
 * The cursors sent in `sync`, kept in storage per user together with the server's `epoch`.
 * An epoch is one database: cursors from another one point at messages that do not exist (or
 * are different ones), so a changed epoch drops them all.
 *
 * A cursor only ever moves over a gap-free run of `seq`s: messages delivered live before the
 * replay may arrive ahead of older replayed ones, and a cursor that jumped over the hole would
 * make the next sync skip it for good.
 */
export class Cursors {
  /**
   * @param {object} options
   * @param {{getItem: Function, setItem: Function, removeItem: Function}} options.storage
   * @param {number | string} options.userId
   */
  constructor({ storage, userId }) {
    this.storage = storage;
    this.key = `chatgroup.cursors.${userId}`;
    const saved = readJson(storage, this.key, null);
    /** @type {string | null} */
    this.epoch = saved && typeof saved.epoch === "string" ? saved.epoch : null;
    /** @type {Map<number, number>} */
    this.cursors = new Map();
    if (saved && saved.cursors && typeof saved.cursors === "object") {
      for (const [conversation, seq] of Object.entries(saved.cursors)) {
        if (Number.isInteger(seq) && seq >= 0) this.cursors.set(Number(conversation), seq);
      }
    }
    /** @type {Map<number, Set<number>>} seqs seen beyond a gap, per conversation (memory only) */
    this.ahead = new Map();
  }

  /**
   * Takes the `epoch` of a `ready`.
   * @param {string} epoch
   * @returns {boolean} true when it differs from the stored one and the cursors were dropped
   *   (the page then also drops whatever it cached from the old database)
   */
  adoptEpoch(epoch) {
    if (this.epoch === epoch) return false;
    const hadOne = this.epoch !== null;
    this.epoch = epoch;
    this.cursors.clear();
    this.ahead.clear();
    this.save();
    return hadOne;
  }

  /** @param {number} conversation @returns {number | undefined} */
  get(conversation) {
    return this.cursors.get(conversation);
  }

  /**
   * A message with this `seq` is now held.
   * @param {number} conversation
   * @param {number} seq
   */
  observe(conversation, seq) {
    const cursor = this.cursors.get(conversation);
    if (cursor === undefined) {
      // No cursor yet (a conversation just joined): the first message seen starts one; what
      // came before it is history's job, exactly as after a sync without a cursor.
      this.cursors.set(conversation, seq);
      this.advanceOver(conversation);
      this.save();
      return;
    }
    if (seq <= cursor) return;
    if (seq === cursor + 1) {
      this.cursors.set(conversation, seq);
      this.advanceOver(conversation);
      this.save();
      return;
    }
    let set = this.ahead.get(conversation);
    if (!set) this.ahead.set(conversation, (set = new Set()));
    set.add(seq);
  }

  /**
   * Takes a `synced`: the server says how far the client now holds each conversation.
   * @param {Record<string, number>} cursors
   */
  applySynced(cursors) {
    for (const [key, seq] of Object.entries(cursors)) {
      const conversation = Number(key);
      // The server's figure wins even when lower: it clamps a cursor that claimed more than
      // the conversation holds.
      this.cursors.set(conversation, seq);
      this.advanceOver(conversation);
    }
    this.save();
  }

  /** Drops a conversation's cursor (left or removed: a cursor for it is an error). @param {number} conversation */
  forget(conversation) {
    this.ahead.delete(conversation);
    if (this.cursors.delete(conversation)) this.save();
  }

  /**
   * The `sync` to send after each `ready`, with the cursors of the conversations the user is
   * in (others would only earn `not_member` errors); those left out replay their latest few.
   * Drops stored cursors for conversations no longer listed.
   * @param {number[]} conversations the ids in `ready`
   * @param {string} [ref]
   * @returns {{type: "sync", cursors: Record<string, number>, ref?: string}}
   */
  syncRequest(conversations, ref) {
    const member = new Set(conversations);
    let dropped = false;
    for (const conversation of [...this.cursors.keys()]) {
      if (!member.has(conversation)) {
        this.cursors.delete(conversation);
        this.ahead.delete(conversation);
        dropped = true;
      }
    }
    if (dropped) this.save();
    const cursors = {};
    for (const [conversation, seq] of this.cursors) cursors[conversation] = seq;
    const request = { type: "sync", cursors };
    if (ref != null) request.ref = ref;
    return request;
  }

  advanceOver(conversation) {
    const set = this.ahead.get(conversation);
    if (!set) return;
    let cursor = this.cursors.get(conversation);
    while (set.has(cursor + 1)) {
      cursor += 1;
      set.delete(cursor);
    }
    for (const seq of set) if (seq <= cursor) set.delete(seq);
    if (set.size === 0) this.ahead.delete(conversation);
    this.cursors.set(conversation, cursor);
  }

  save() {
    const cursors = {};
    for (const [conversation, seq] of this.cursors) cursors[conversation] = seq;
    writeJson(this.storage, this.key, { epoch: this.epoch, cursors });
  }
}
