// The page: the login screen or the chat, wired to the client and the browser's events.

import { Session, describeError } from "./session.js";
import { ChatClient } from "./client.js";
import { ListView } from "./list-view.js";
import { ChatView } from "./chat-view.js";
import { Dialogs } from "./dialogs.js";
import { byId, avatar } from "./dom.js";
import { tabTitle } from "./format.js";
import { sha256Hex } from "./uploads.js";
import { browserStorage } from "../storage.js";
import { bannerText } from "../connection.js";

const storage = browserStorage();
const session = new Session({ fetch: (...args) => fetch(...args), storage });

/** The signed-in part of the page, built once per login. */
let app = null;

function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

/** @returns {number | null} the conversation in the address (#/c/12) */
function routeConversation() {
  const match = /^#\/c\/(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
}

// -- login -------------------------------------------------------------------------------------

function showLogin(notice = "") {
  byId("app").hidden = true;
  byId("login").hidden = false;
  byId("login-error").textContent = notice;
  document.title = "chatgroup";
  byId("login-username").focus();
}

byId("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = byId("login-username").value.trim();
  const password = byId("login-password").value;
  const register = event.submitter?.dataset.action === "register";
  const error = byId("login-error");
  error.textContent = "";
  const buttons = byId("login-form").querySelectorAll("button");
  for (const b of buttons) b.disabled = true;
  try {
    if (register) await session.register(username, password);
    else await session.login(username, password);
    byId("login-password").value = "";
    startApp();
  } catch (e) {
    error.textContent = describeError(e);
  } finally {
    for (const b of buttons) b.disabled = false;
  }
});

// -- the chat ----------------------------------------------------------------------------------

/** Whether this page load already built the chat once (its listeners are bound to the DOM). */
let built = false;

function startApp() {
  if (built) {
    // A second sign-in in the same page load (after a logout or an ended session): start from
    // a clean page rather than bind a second set of handlers to the same elements. The new
    // session is in storage, so the reload opens straight into the chat.
    location.hash = "";
    location.reload();
    return;
  }
  built = true;
  byId("login").hidden = true;
  byId("app").hidden = false;
  const me = session.user;
  byId("me-avatar").replaceChildren(avatar(me.username));
  byId("me-name").textContent = me.username;

  const client = new ChatClient({ session, storage, WebSocket, url: wsUrl, digest: sha256Hex });
  const list = new ListView({ client, onOpen: (id) => navigate(id) });
  const dialogs = new Dialogs({ client, onOpen: (id) => navigate(id) });
  const chat = new ChatView({
    client,
    onDownload: (m) => download(m),
    imageUrl: (fileId) => imageUrl(fileId),
    onAction: (kind) => kind === "members" && client.open != null && dialogs.openMembers(client.open),
  });
  app = { client, list, chat, dialogs, bannerTimer: null };

  let readyMarked = false;
  let renderQueued = new Set();
  // Redraws are gathered per frame: a sync of 256 messages is one redraw, not 256.
  const queue = (what) => {
    if (renderQueued.size === 0) requestAnimationFrame(flush);
    renderQueued.add(what);
  };
  const flush = () => {
    const what = renderQueued;
    renderQueued = new Set();
    if (app?.client !== client) return;
    if (what.has("list")) {
      list.render();
      updateTitle();
    }
    if (what.has("header")) {
      chat.renderHeader();
      dialogs.renderMembers();
    }
    if (what.has("chat")) chat.render();
    if (what.has("typing")) chat.renderTyping();
  };

  client.on((kind, detail) => {
    switch (kind) {
      case "connection":
        renderBanner(detail);
        break;
      case "ready":
        if (!readyMarked) {
          readyMarked = true;
          performance.mark("chat:ready");
        }
        openRoute();
        queue("list");
        queue("header");
        break;
      case "conversations":
        queue("list");
        queue("header");
        break;
      case "messages":
      case "uploads":
        if (detail === client.open) {
          // Rendered now, not at the next frame: the first screen after `ready` is measured.
          chat.render();
        }
        queue("list");
        break;
      case "history":
        if (detail.conversation === client.open) chat.historyArrived();
        break;
      case "receipts":
        queue("list");
        if (detail === client.open) queue("chat");
        break;
      case "typing":
        if (detail === client.open) queue("typing");
        queue("list");
        break;
      case "presence":
        queue("list");
        queue("header");
        break;
      case "removed":
        if (routeConversation() === detail) navigate(null);
        break;
      case "session_gone":
        stopApp();
        showLogin("Your session has ended. Please log in again.");
        break;
      default:
    }
  });

  function openRoute() {
    const id = routeConversation();
    const known = id != null && client.conversations.has(id);
    if (client.open === (known ? id : null) && chat.conversation === client.open) return;
    client.setOpen(known ? id : null);
    chat.show(client.open);
    list.select(client.open);
    document.body.classList.toggle("chat-open", client.open != null);
    updateTitle();
  }
  app.openRoute = openRoute;

  function updateTitle() {
    const c = client.open != null ? client.conversations.get(client.open) : null;
    document.title = tabTitle(client.totalUnread(), c?.name ?? null);
  }

  /** @type {Map<number, Promise<string>>} blob: URLs of pictures, fetched once per page */
  const images = new Map();
  function imageUrl(fileId) {
    let url = images.get(fileId);
    if (!url) {
      url = session.api(`/api/files/${fileId}`, { raw: true }).then((r) => r.blob()).then((b) => URL.createObjectURL(b));
      url.catch(() => images.delete(fileId));
      images.set(fileId, url);
    }
    return url;
  }

  async function download(m) {
    if (m?.file?.id == null) return;
    try {
      const response = await session.api(`/api/files/${m.file.id}`, { raw: true });
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = m.file.name ?? m.body;
      a.hidden = true;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      byId("toast").textContent = `Download failed: ${describeError(error)}`;
    }
  }

  client.start();
  renderBanner(client.connection.state);
  list.render();
  openRoute();
}

function stopApp() {
  if (!app) return;
  app.client.stop();
  clearInterval(app.bannerTimer);
  app = null;
}

function navigate(id) {
  const hash = id == null ? "#/" : `#/c/${id}`;
  if (location.hash !== hash) location.hash = hash;
  else app?.openRoute();
  if (id != null) app?.chat.focusInput();
}

function renderBanner(state) {
  const banner = byId("banner");
  const draw = () => {
    banner.textContent = bannerText(state, Date.now());
    banner.dataset.state = state.phase;
  };
  draw();
  if (app) {
    clearInterval(app.bannerTimer);
    // The countdown stays true: redrawn every second while a retry is scheduled.
    app.bannerTimer = state.retryAt != null ? setInterval(draw, 1000) : null;
  }
}

window.addEventListener("hashchange", () => app?.openRoute());
window.addEventListener("online", () => app?.client.hint("online"));
window.addEventListener("offline", () => app?.client.hint("offline"));
document.addEventListener("visibilitychange", () => {
  if (!app) return;
  if (document.visibilityState === "visible") {
    app.client.hint("visible");
    app.chat.updateReading();
  } else {
    app.client.setReading(false);
  }
});

byId("logout").addEventListener("click", async () => {
  stopApp();
  await session.logout();
  location.hash = "";
  showLogin();
});
byId("new-direct").addEventListener("click", () => app?.dialogs.openDirect());
byId("new-group").addEventListener("click", () => app?.dialogs.openGroup());
byId("back").addEventListener("click", () => navigate(null));
document.addEventListener("keydown", (event) => {
  // Escape in a conversation on a phone goes back to the list (dialogs handle their own).
  if (event.key === "Escape" && !document.querySelector("dialog[open]") && app?.client.open != null && window.matchMedia("(max-width: 719px)").matches) {
    navigate(null);
  }
});

if (session.signedIn) startApp();
else showLogin();
