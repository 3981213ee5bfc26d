// The open conversation: a window of its messages (never the whole history in the DOM), the
// header, the typing line and the composer.

import { h, avatar, reconcile, icon } from "./dom.js";
import { dayKey, dayLabel, timeOfDay, fileSize, typingText, lastSeenText, STATUS_WORDS } from "./format.js";
import { Receipts } from "../receipts.js";
import { planWindow, messageKey } from "./window.js";

/** Messages shown when a conversation opens, and added per step when scrolling. */
const STEP = 50;
/** Most messages in the DOM at once; beyond it the far end is dropped. */
const MAX_RENDERED = 200;
/** Pixels from an edge at which the next step loads. */
const EDGE_PX = 400;
/** Consecutive messages of one sender within this gap share one header. */
const RUN_GAP_MS = 5 * 60_000;

export class ChatView {
  /**
   * @param {object} options
   * @param {import("./client.js").ChatClient} options.client
   * @param {(fileMessage: object) => void} options.onDownload
   * @param {(fileId: number) => Promise<string>} options.imageUrl a blob: URL of an image file
   * @param {(kind: string) => void} options.onAction "members"
   */
  constructor({ client, onDownload, onAction, imageUrl }) {
    this.client = client;
    this.onDownload = onDownload;
    this.imageUrl = imageUrl;
    this.onAction = onAction;
    this.el = {
      pane: document.getElementById("chat"),
      empty: document.getElementById("chat-empty"),
      header: document.getElementById("chat-header"),
      avatar: document.getElementById("chat-avatar"),
      title: document.getElementById("chat-title"),
      subtitle: document.getElementById("chat-subtitle"),
      scroller: document.getElementById("scroller"),
      list: document.getElementById("messages"),
      top: document.getElementById("history-status"),
      jump: document.getElementById("jump"),
      typing: document.getElementById("typing"),
      form: document.getElementById("composer"),
      input: document.getElementById("input"),
      fileInput: document.getElementById("file-input"),
    };
    /** @type {Map<string, HTMLElement>} */
    this.nodes = new Map();
    this.conversation = null;
    /** The rendered window: the key of its first message, and of its last (null: the newest). */
    this.window = { startKey: null, endKey: null };
    this.scrollQueued = false;
    this.firstScreenMarked = false;
    this.drafts = new Map();

    this.el.scroller.addEventListener("scroll", () => this.queueScroll(), { passive: true });
    this.el.jump.addEventListener("click", () => this.jumpToNewest());
    this.el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.el.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.el.input.addEventListener("input", () => {
      this.autosize();
      if (this.conversation != null) this.client.typing(this.conversation, this.el.input.value);
    });
    document.getElementById("attach").addEventListener("click", () => this.el.fileInput.click());
    this.el.fileInput.addEventListener("change", () => {
      const files = [...(this.el.fileInput.files ?? [])];
      this.el.fileInput.value = "";
      for (const file of files) if (this.conversation != null) this.client.sendFile(this.conversation, file);
      this.stickToBottom();
    });
    document.getElementById("members-button").addEventListener("click", () => this.onAction("members"));
    // Files dropped on the conversation are sent too.
    this.el.pane.addEventListener("dragover", (event) => {
      if (this.conversation != null && event.dataTransfer?.types.includes("Files")) event.preventDefault();
    });
    this.el.pane.addEventListener("drop", (event) => {
      if (this.conversation == null || !event.dataTransfer?.files.length) return;
      event.preventDefault();
      for (const file of event.dataTransfer.files) this.client.sendFile(this.conversation, file);
      this.stickToBottom();
    });
  }

  /** Shows a conversation (null: the empty state). @param {number | null} id */
  show(id) {
    if (this.conversation != null) this.drafts.set(this.conversation, this.el.input.value);
    this.conversation = id;
    this.nodes.clear();
    this.el.list.replaceChildren();
    this.window = { startKey: null, endKey: null };
    const open = id != null;
    this.el.empty.hidden = open;
    this.el.header.hidden = !open;
    this.el.scroller.hidden = !open;
    this.el.form.hidden = !open;
    this.el.typing.hidden = !open;
    this.el.jump.hidden = true;
    if (!open) return;
    this.el.list.classList.toggle("direct", this.client.conversations.get(id)?.kind === "direct");
    this.el.input.value = this.drafts.get(id) ?? "";
    this.autosize();
    this.renderHeader();
    this.renderTyping();
    this.render({ toBottom: true });
  }

  focusInput() {
    this.el.input.focus();
  }

  // -- header ------------------------------------------------------------------------------

  renderHeader() {
    const c = this.client.conversations.get(this.conversation);
    if (!c) return;
    const peer = this.client.peer(c);
    const online = peer ? this.client.presence.get(peer.id).online : null;
    this.el.avatar.replaceChildren(avatar(c.name, { online }));
    this.el.title.textContent = c.name;
    let subtitle;
    if (peer) {
      const p = this.client.presence.get(peer.id);
      subtitle = p.online ? "online" : lastSeenText(p.lastSeen, Date.now());
    } else {
      const onlineCount = c.members.filter((m) => m.id !== this.client.me && this.client.presence.get(m.id).online).length;
      subtitle = `${c.members.length} members${onlineCount ? `, ${onlineCount} online` : ""}`;
    }
    this.el.subtitle.textContent = subtitle;
    this.el.subtitle.classList.toggle("is-online", Boolean(peer && online));
  }

  renderTyping() {
    if (this.conversation == null) return;
    const names = this.client.typingIn.typers(this.conversation).map((u) => this.client.nameOf(u));
    this.el.typing.textContent = typingText(names);
    this.el.typing.classList.toggle("active", names.length > 0);
  }

  // -- messages ----------------------------------------------------------------------------

  /**
   * Brings the DOM in line with the timeline, keeping what is on screen where it is.
   * @param {{toBottom?: boolean, extend?: "up" | "down"}} [options]
   */
  render({ toBottom = false, extend } = {}) {
    if (this.conversation == null) return;
    const timeline = this.client.timelines.get(this.conversation);
    const messages = timeline.messages();
    const scroller = this.el.scroller;
    const wasAtBottom = this.window.endKey == null && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    const anchor = toBottom ? null : this.anchor();

    const plan = planWindow(messages, this.window, { step: STEP, max: MAX_RENDERED, extend });
    this.window = { startKey: plan.startKey, endKey: plan.endKey };

    const items = [];
    const now = Date.now();
    for (let i = plan.start; i < plan.end; i++) {
      const m = messages[i];
      const prev = messages[i - 1];
      const ts = m.ts ?? now;
      if (i === plan.start || !prev || dayKey(prev.ts ?? now) !== dayKey(ts)) {
        items.push({ day: dayKey(ts), label: dayLabel(ts, now) });
      }
      const first = !prev || prev.sender !== m.sender || prev.kind === "system" || ts - (prev.ts ?? now) > RUN_GAP_MS || dayKey(prev.ts ?? now) !== dayKey(ts);
      items.push({ m, first });
    }
    reconcile(
      this.el.list,
      this.nodes,
      items,
      (item) => (item.m ? messageKey(item.m) : `day:${item.day}`),
      (item) => (item.m ? this.createMessage(item.m) : h("div", { class: "day", attrs: { role: "listitem" } }, [h("span", { text: item.label })])),
      (el, item) => (item.m ? this.updateMessage(el, item.m, item.first) : (el.firstChild.textContent = item.label)),
    );

    const atStart = plan.start === 0 && !timeline.hasMore;
    this.el.top.textContent = this.client.loadingOlder(this.conversation) ? "Loading older messages…" : atStart && messages.length ? "This is the beginning of the conversation" : "";
    this.el.top.dataset.state = this.client.loadingOlder(this.conversation) ? "loading" : atStart ? "start" : "";

    if (toBottom || (wasAtBottom && this.window.endKey == null)) {
      scroller.scrollTop = scroller.scrollHeight;
    } else if (anchor) {
      const el = this.nodes.get(anchor.key);
      if (el) scroller.scrollTop = el.offsetTop - anchor.offset;
    }
    const newer = this.window.endKey != null;
    this.el.jump.hidden = !newer && (wasAtBottom || toBottom || this.distanceFromBottom() < 48);
    this.updateReading();
    this.markFirstScreen(messages.length);
  }

  /** The first message on screen and its distance from the top, to hold it in place. */
  anchor() {
    const top = this.el.scroller.scrollTop;
    for (const el of this.el.list.children) {
      if (el.offsetTop + el.offsetHeight > top && el.classList.contains("msg")) {
        return { key: el.dataset.key, offset: el.offsetTop - top };
      }
    }
    return null;
  }

  distanceFromBottom() {
    const s = this.el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight;
  }

  queueScroll() {
    if (this.scrollQueued) return;
    this.scrollQueued = true;
    requestAnimationFrame(() => {
      this.scrollQueued = false;
      this.scrolled();
    });
  }

  scrolled() {
    if (this.conversation == null) return;
    const s = this.el.scroller;
    if (s.scrollTop < EDGE_PX) {
      const timeline = this.client.timelines.get(this.conversation);
      const first = this.nodes.get(this.window.startKey);
      const messages = timeline.messages();
      if (messages.length && messageKey(messages[0]) !== this.window.startKey) this.render({ extend: "up" });
      else if (first && this.client.loadOlder(this.conversation)) this.render();
    } else if (this.window.endKey != null && this.distanceFromBottom() < EDGE_PX) {
      this.render({ extend: "down" });
    }
    // The way back down shows once the newest messages are out of sight.
    this.el.jump.hidden = this.window.endKey == null && this.distanceFromBottom() < 200;
    this.updateReading();
  }

  /** Older messages arrived: they join the window above what is on screen. */
  historyArrived() {
    this.render({ extend: "up" });
  }

  jumpToNewest() {
    this.window = { startKey: null, endKey: null };
    this.nodes.clear();
    this.el.list.replaceChildren();
    this.render({ toBottom: true });
    this.el.input.focus();
  }

  stickToBottom() {
    if (this.window.endKey != null) this.jumpToNewest();
    else this.render({ toBottom: true });
  }

  updateReading() {
    const reading = this.conversation != null && document.visibilityState === "visible" && this.window.endKey == null && this.distanceFromBottom() < 48;
    this.client.setReading(reading);
  }

  markFirstScreen(count) {
    if (this.firstScreenMarked || count === 0 || !this.client.authed) return;
    this.firstScreenMarked = true;
    // After the frame that shows it: rAF runs before the paint, the task after it follows it.
    requestAnimationFrame(() =>
      setTimeout(() => {
        performance.mark("chat:first-screen");
        try {
          const measure = performance.measure("chat:ready-to-first-screen", "chat:ready", "chat:first-screen");
          document.body.dataset.firstScreenMs = measure.duration.toFixed(1);
        } catch {
          // No `ready` mark: the conversation was opened later, by hand.
        }
      }, 0),
    );
  }

  createMessage(m) {
    if (m.kind === "system") {
      return h("div", { class: "msg system", attrs: { role: "listitem" }, data: { testid: "message" } }, [h("span", { class: "system-text", text: m.body })]);
    }
    const own = m.sender === this.client.me;
    const bubble = h("div", { class: "bubble" });
    const el = h("div", { class: own ? "msg own" : "msg theirs", attrs: { role: "listitem" }, data: { testid: "message" } }, [bubble]);
    if (!own) {
      el.prepend(avatar(this.client.nameOf(m.sender), { size: "s" }));
      bubble.append(h("div", { class: "sender", text: m.senderName ?? this.client.nameOf(m.sender) }));
    }
    if (m.kind === "file") {
      const name = m.file?.name ?? m.body;
      const download = h("button", { class: "file-download", attrs: { type: "button", "aria-label": `Download ${name}` }, data: { testid: "download" } }, [icon("download")]);
      download.addEventListener("click", () => this.onDownload(el.message));
      const card = h("div", { class: "file-card" }, [
        h("span", { class: "file-icon" }, [icon("file")]),
        h("span", { class: "file-info" }, [h("span", { class: "file-name", text: name, data: { testid: "file-name" } }), h("span", { class: "file-size", text: fileSize(m.file?.size ?? 0) })]),
        download,
      ]);
      const progress = h("progress", { class: "upload-progress", data: { testid: "upload-progress" }, attrs: { max: "1", value: "0" } });
      if (isPreviewable(m.file)) {
        // A fixed 16:9 box (the picture covers it): nothing moves when it arrives.
        const img = h("img", { class: "file-preview", attrs: { alt: name }, data: { testid: "image-preview" } });
        img.addEventListener("load", () => img.classList.add("loaded"));
        img.addEventListener("click", () => this.onDownload(el.message));
        bubble.append(img);
        el.classList.add("has-preview");
      }
      bubble.append(card, progress);
    } else {
      bubble.append(h("div", { class: "body", text: m.body, data: { testid: "message-body" } }));
    }
    const meta = h("div", { class: "meta" }, [h("time", { class: "time" })]);
    if (own) {
      meta.append(h("span", { class: "status", attrs: { role: "img" }, data: { testid: "message-status" } }));
    }
    bubble.append(meta);
    if (own) {
      const actions = h("div", { class: "failed-actions" }, [
        h("span", { class: "failed-text", text: "Not sent." }),
        h("button", { class: "link", text: "Retry", attrs: { type: "button" }, data: { action: "retry" } }),
        h("button", { class: "link", text: "Discard", attrs: { type: "button" }, data: { action: "discard" } }),
      ]);
      actions.addEventListener("click", (event) => {
        const action = event.target.closest("button")?.dataset.action;
        if (action === "retry") this.client.retry(this.conversation, el.message.localId);
        if (action === "discard") this.client.discard(this.conversation, el.message.localId);
      });
      bubble.append(actions);
    }
    return el;
  }

  updateMessage(el, m, first) {
    el.message = m;
    el.classList.toggle("first", first);
    if (m.seq != null) el.dataset.seq = String(m.seq);
    if (m.kind === "system") return;
    const time = el.querySelector("time");
    if (m.ts != null && time.dataset.ts !== String(m.ts)) {
      time.dataset.ts = String(m.ts);
      time.dateTime = new Date(m.ts).toISOString();
      time.textContent = timeOfDay(m.ts);
    }
    if (m.kind === "file") {
      const upload = m.pending ? this.client.uploads.get(m.localId) : null;
      const progress = el.querySelector("progress");
      progress.hidden = !upload || upload.state === "failed";
      if (upload) progress.value = upload.size ? upload.sent / upload.size : 1;
      el.querySelector(".file-download").hidden = Boolean(m.pending) || m.file?.id == null;
      const img = el.querySelector(".file-preview");
      if (img && !img.dataset.loading) {
        // The picture itself: from the file being sent, or fetched (with the token) once known.
        if (upload) {
          img.dataset.loading = "local";
          img.src = URL.createObjectURL(upload.file);
        } else if (m.file?.id != null) {
          img.dataset.loading = "remote";
          this.imageUrl(m.file.id).then(
            (url) => (img.src = url),
            () => {},
          );
        }
      }
    }
    if (m.sender !== this.client.me) return;
    const ticks = this.client.ticks(m);
    const status = el.querySelector(".status");
    if (status.dataset.status !== ticks.state || status.title !== Receipts.describe(ticks)) {
      status.dataset.status = ticks.state;
      const words = ticks.of > 1 ? Receipts.describe(ticks) : STATUS_WORDS[ticks.state];
      status.title = words;
      status.setAttribute("aria-label", words);
      const glyph = { sending: "clock", sent: "check", delivered: "checks", read: "checks", failed: "alert" }[ticks.state];
      status.replaceChildren(icon(glyph));
    }
    el.classList.toggle("failed", ticks.state === "failed");
  }

  // -- composer ----------------------------------------------------------------------------

  submit() {
    const body = this.el.input.value.trim();
    if (!body || this.conversation == null) return;
    this.client.send(this.conversation, body);
    this.el.input.value = "";
    this.drafts.delete(this.conversation);
    this.autosize();
    this.stickToBottom();
  }

  autosize() {
    const input = this.el.input;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }
}

/** Pictures shown inline: common raster types, small enough to fetch without asking. */
function isPreviewable(file) {
  return Boolean(file && /^image\/(png|jpeg|gif|webp|avif)$/.test(file.mime ?? "") && (file.size ?? 0) <= 8_000_000);
}
