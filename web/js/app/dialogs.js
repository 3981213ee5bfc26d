// The dialogs: start a direct chat, create a group, a conversation's members (add, leave).
// Native <dialog>: focus stays inside, Escape closes.

import { h, avatar, byId } from "./dom.js";
import { describeError } from "./session.js";
import { lastSeenText } from "./format.js";

/**
 * A username search box with its result list.
 * @param {import("./client.js").ChatClient} client
 * @param {HTMLInputElement} input
 * @param {HTMLElement} results an <ul>
 * @param {(user: {id: number, username: string}) => void} onPick
 * @param {() => Set<number>} exclude ids not to offer
 */
function userSearch(client, input, results, onPick, exclude = () => new Set()) {
  let timer = null;
  let generation = 0;
  const run = async () => {
    const prefix = input.value.trim();
    const mine = ++generation;
    if (!prefix) {
      results.replaceChildren();
      return;
    }
    let users;
    try {
      users = await client.searchUsers(prefix);
    } catch (error) {
      if (mine === generation) results.replaceChildren(h("li", { class: "hint", text: describeError(error) }));
      return;
    }
    if (mine !== generation) return;
    const skip = exclude();
    users = users.filter((u) => !skip.has(u.id));
    if (users.length === 0) {
      results.replaceChildren(h("li", { class: "hint", text: "Nobody found by that name." }));
      return;
    }
    results.replaceChildren(
      ...users.map((u) => {
        const button = h("button", { class: "person", attrs: { type: "button" }, data: { testid: "user-result", username: u.username } }, [avatar(u.username, { size: "s" }), h("span", { text: u.username })]);
        button.addEventListener("click", () => onPick(u));
        return h("li", {}, [button]);
      }),
    );
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(run, 120);
  });
  input.addEventListener("keydown", (event) => {
    // Enter picks the first result (when there is one).
    if (event.key === "Enter") {
      event.preventDefault();
      results.querySelector("button")?.click();
    }
  });
  return {
    clear() {
      input.value = "";
      results.replaceChildren();
    },
    refresh: run,
  };
}

export class Dialogs {
  /**
   * @param {object} options
   * @param {import("./client.js").ChatClient} options.client
   * @param {(id: number) => void} options.onOpen open a conversation
   */
  constructor({ client, onOpen }) {
    this.client = client;
    this.onOpen = onOpen;

    // Direct chat.
    this.direct = byId("dialog-direct");
    const directError = byId("direct-error");
    this.directSearch = userSearch(client, byId("direct-search"), byId("direct-results"), async (user) => {
      directError.textContent = "";
      try {
        const c = await client.createDirect(user.username);
        this.direct.close();
        onOpen(c.id);
      } catch (error) {
        directError.textContent = describeError(error);
      }
    });

    // Group.
    this.group = byId("dialog-group");
    this.picked = new Map();
    const groupError = byId("group-error");
    const chips = byId("group-chips");
    const renderChips = () => {
      chips.replaceChildren(
        ...[...this.picked.values()].map((u) => {
          const remove = h("button", { class: "chip", attrs: { type: "button", "aria-label": `Remove ${u.username}` }, data: { testid: "group-member-chip" } }, [u.username, h("span", { class: "chip-x", text: "×", attrs: { "aria-hidden": "true" } })]);
          remove.addEventListener("click", () => {
            this.picked.delete(u.id);
            renderChips();
          });
          return remove;
        }),
      );
    };
    this.renderChips = renderChips;
    this.groupSearch = userSearch(
      client,
      byId("group-search"),
      byId("group-results"),
      (user) => {
        this.picked.set(user.id, user);
        renderChips();
        this.groupSearch.clear();
        byId("group-search").focus();
      },
      () => new Set(this.picked.keys()),
    );
    byId("group-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = byId("group-name").value.trim();
      if (!name) return;
      groupError.textContent = "";
      try {
        const c = await client.createGroup(name, [...this.picked.values()].map((u) => u.username));
        this.group.close();
        onOpen(c.id);
      } catch (error) {
        groupError.textContent = describeError(error);
      }
    });

    // Members.
    this.members = byId("dialog-members");
    const membersError = byId("members-error");
    this.addSearch = userSearch(
      client,
      byId("add-search"),
      byId("add-results"),
      async (user) => {
        membersError.textContent = "";
        try {
          await client.addMember(this.membersOf, user.username);
          this.addSearch.clear();
          this.renderMembers();
        } catch (error) {
          membersError.textContent = describeError(error);
        }
      },
      () => new Set(client.conversations.get(this.membersOf)?.members.map((m) => m.id) ?? []),
    );
    byId("leave").addEventListener("click", async () => {
      const id = this.membersOf;
      membersError.textContent = "";
      try {
        await client.leave(id);
        this.members.close();
      } catch (error) {
        membersError.textContent = describeError(error);
      }
    });

    for (const dialog of [this.direct, this.group, this.members]) {
      dialog.querySelector("[data-close]")?.addEventListener("click", () => dialog.close());
      // A click on the backdrop (the dialog element itself, outside its content) closes it.
      dialog.addEventListener("click", (event) => {
        if (event.target === dialog) dialog.close();
      });
    }
  }

  openDirect() {
    this.directSearch.clear();
    byId("direct-error").textContent = "";
    this.direct.showModal();
    byId("direct-search").focus();
  }

  openGroup() {
    this.groupSearch.clear();
    this.picked.clear();
    this.renderChips();
    byId("group-name").value = "";
    byId("group-error").textContent = "";
    this.group.showModal();
    byId("group-name").focus();
  }

  /** @param {number} id */
  openMembers(id) {
    this.membersOf = id;
    this.addSearch.clear();
    byId("members-error").textContent = "";
    this.renderMembers();
    this.members.showModal();
  }

  /** Redraws the members dialog if it is open (presence or membership changed). */
  renderMembers() {
    if (!this.members.open && this.membersOf == null) return;
    const c = this.client.conversations.get(this.membersOf);
    if (!c) {
      if (this.members.open) this.members.close();
      return;
    }
    byId("members-title").textContent = c.kind === "group" ? c.name : c.name;
    const now = Date.now();
    const sorted = [...c.members].sort((a, b) => Number(this.client.presence.get(b.id).online || b.id === this.client.me) - Number(this.client.presence.get(a.id).online || a.id === this.client.me) || a.username.localeCompare(b.username));
    byId("members-list").replaceChildren(
      ...sorted.map((m) => {
        const me = m.id === this.client.me;
        const p = this.client.presence.get(m.id);
        const online = me || p.online;
        return h("li", { class: "member", data: { testid: "member", username: m.username, online: String(online) } }, [
          avatar(m.username, { online, size: "s" }),
          h("span", { class: "member-name", text: me ? `${m.username} (you)` : m.username }),
          h("span", { class: "member-state", text: `${c.owner === m.id ? "owner · " : ""}${online ? "online" : lastSeenText(p.lastSeen, now)}` }),
        ]);
      }),
    );
    const group = c.kind === "group";
    byId("members-add").hidden = !group || c.owner !== this.client.me;
    byId("leave").hidden = !group;
  }
}
