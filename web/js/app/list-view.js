// The conversation list: newest activity first, with the last message, unread badge and the
// online dot of direct chats.

import { h, avatar, reconcile } from "./dom.js";
import { listTime, previewText } from "./format.js";

export class ListView {
  /**
   * @param {object} options
   * @param {import("./client.js").ChatClient} options.client
   * @param {(id: number) => void} options.onOpen
   */
  constructor({ client, onOpen }) {
    this.client = client;
    this.onOpen = onOpen;
    this.list = document.getElementById("conversations");
    this.empty = document.getElementById("conversations-empty");
    /** @type {Map<string, HTMLElement>} */
    this.nodes = new Map();
    this.selected = null;
    this.list.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-id]");
      if (button) this.onOpen(Number(button.dataset.id));
    });
  }

  /** @param {number | null} id */
  select(id) {
    this.selected = id;
    this.render();
  }

  render() {
    const conversations = this.client.conversationList();
    this.empty.hidden = conversations.length > 0;
    const now = Date.now();
    reconcile(
      this.list,
      this.nodes,
      conversations,
      (c) => String(c.id),
      () => {
        const button = h("button", { class: "conv", attrs: { type: "button" }, data: { testid: "conversation-item" } }, [
          h("span", { class: "conv-avatar" }),
          h("span", { class: "conv-main" }, [
            h("span", { class: "conv-top" }, [h("span", { class: "conv-name", data: { testid: "conversation-name" } }), h("span", { class: "conv-time" })]),
            h("span", { class: "conv-bottom" }, [h("span", { class: "conv-preview" }), h("span", { class: "badge", data: { testid: "unread-badge" } })]),
          ]),
        ]);
        return h("li", {}, [button]);
      },
      (li, c) => {
        const button = li.firstChild;
        const peer = this.client.peer(c);
        const online = peer ? this.client.presence.get(peer.id).online : null;
        const unread = this.client.unread(c.id);
        const typers = this.client.typingIn.typers(c.id);
        const typing = typers.length === 0 ? "" : c.kind === "group" ? `${this.client.nameOf(typers[0])} is typing…` : "typing…";
        const preview = typing || previewText(c.lastMessage, this.client.me, c.kind === "group");
        const stamp = `${c.name}|${online}|${unread}|${c.lastMessage?.seq}|${c.lastMessage?.ts}|${this.selected === c.id}|${preview}`;
        if (button.dataset.stamp === stamp) return;
        button.dataset.stamp = stamp;
        button.dataset.id = String(c.id);
        button.dataset.name = c.name;
        button.dataset.kind = c.kind;
        if (peer) button.dataset.online = String(online);
        button.setAttribute("aria-current", this.selected === c.id ? "true" : "false");
        button.querySelector(".conv-avatar").replaceChildren(avatar(c.name, { online }));
        button.querySelector(".conv-name").textContent = c.name;
        button.querySelector(".conv-time").textContent = c.lastMessage?.ts ? listTime(c.lastMessage.ts, now) : "";
        button.querySelector(".conv-preview").textContent = preview;
        const badge = button.querySelector(".badge");
        badge.textContent = unread > 99 ? "99+" : String(unread);
        badge.hidden = unread === 0;
        button.classList.toggle("has-unread", unread > 0);
        button.classList.toggle("is-typing", Boolean(typing));
        const label = `${c.name}${peer ? (online ? ", online" : "") : ", group"}${unread ? `, ${unread} unread` : ""}`;
        button.setAttribute("aria-label", label);
      },
    );
  }
}
