// Who is online, from `presence` and `user_list`.

/**
 * @typedef {{online: boolean, lastSeen: number | null}} PresenceInfo
 */

/**
 * Online state per user. The server sends the current state right after every `ready` (only
 * the online ones), so a reconnect starts from {@link Presence#reset}.
 */
export class Presence {
  /** @param {{onChange?: (user: number) => void}} [options] */
  constructor({ onChange = () => {} } = {}) {
    this.onChange = onChange;
    /** @type {Map<number, PresenceInfo>} */
    this.users = new Map();
    /** The conversation whose `user_list` this connection watches (one at a time). */
    this.watched = null;
  }

  /** @param {{user: number, online: boolean, lastSeen?: number}} msg an incoming `presence` */
  apply(msg) {
    this.set(msg.user, msg.online, msg.lastSeen);
  }

  /**
   * A `user_list` answer: every member's state, and the conversation now watched.
   * @param {{conversation: number, members: {id: number, online: boolean, lastSeen?: number}[]}} msg
   */
  applyUserList(msg) {
    this.watched = msg.conversation;
    for (const m of msg.members) this.set(m.id, m.online, m.lastSeen);
  }

  /**
   * The request that starts watching a conversation's members (needed for large groups, whose
   * presence is not pushed otherwise), or null when it is already watched.
   * @param {number} conversation
   * @param {string} [ref]
   */
  userListRequest(conversation, ref) {
    if (this.watched === conversation) return null;
    const request = { type: "user_list", conversation };
    if (ref != null) request.ref = ref;
    return request;
  }

  /** @param {number} user @returns {PresenceInfo} */
  get(user) {
    return this.users.get(user) ?? { online: false, lastSeen: null };
  }

  /**
   * A new connection: everyone counts as offline until the server says otherwise (it lists
   * the online ones right after `ready`), and the watch must be asked for again.
   */
  reset() {
    this.watched = null;
    for (const [user, info] of this.users) {
      if (info.online) {
        this.users.set(user, { online: false, lastSeen: info.lastSeen });
        this.onChange(user);
      }
    }
  }

  set(user, online, lastSeen) {
    const before = this.users.get(user);
    const next = { online, lastSeen: lastSeen ?? before?.lastSeen ?? null };
    this.users.set(user, next);
    if (!before || before.online !== next.online || before.lastSeen !== next.lastSeen) this.onChange(user);
  }
}
