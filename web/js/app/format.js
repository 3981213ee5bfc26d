// Words and numbers as the page shows them: times, days, sizes, names, the tab title.

const DAY_MS = 86_400_000;

/** @param {number} ts @returns {string} the local calendar day, "2026-12-02" */
export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** @param {number} ts @returns {string} "14:05" (the locale's hour cycle) */
export function timeOfDay(ts) {
  return new Date(ts).toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" });
}

/**
 * The heading of a day in the chat view: "Today", "Yesterday", a weekday within the week, else
 * the date.
 * @param {number} ts
 * @param {number} now
 */
export function dayLabel(ts, now) {
  const key = dayKey(ts);
  if (key === dayKey(now)) return "Today";
  if (key === dayKey(now - DAY_MS)) return "Yesterday";
  if (now - ts < 6 * DAY_MS && ts < now) return new Date(ts).toLocaleDateString(undefined, { weekday: "long" });
  const sameYear = new Date(ts).getFullYear() === new Date(now).getFullYear();
  return new Date(ts).toLocaleDateString(undefined, sameYear ? { day: "numeric", month: "long" } : { day: "numeric", month: "long", year: "numeric" });
}

/**
 * The time beside a conversation in the list: the time today, "Yesterday", a short weekday
 * within the week, else a short date.
 * @param {number} ts
 * @param {number} now
 */
export function listTime(ts, now) {
  const key = dayKey(ts);
  if (key === dayKey(now)) return timeOfDay(ts);
  if (key === dayKey(now - DAY_MS)) return "Yesterday";
  if (now - ts < 6 * DAY_MS && ts < now) return new Date(ts).toLocaleDateString(undefined, { weekday: "short" });
  return new Date(ts).toLocaleDateString(undefined, { day: "numeric", month: "short" });
}

/** @param {number | null} lastSeen @param {number} now @returns {string} "last seen 5 min ago" */
export function lastSeenText(lastSeen, now) {
  if (lastSeen == null) return "offline";
  const ago = Math.max(0, now - lastSeen);
  if (ago < 60_000) return "last seen just now";
  if (ago < 3_600_000) return `last seen ${Math.floor(ago / 60_000)} min ago`;
  if (dayKey(lastSeen) === dayKey(now)) return `last seen today at ${timeOfDay(lastSeen)}`;
  if (dayKey(lastSeen) === dayKey(now - DAY_MS)) return `last seen yesterday at ${timeOfDay(lastSeen)}`;
  return `last seen ${new Date(lastSeen).toLocaleDateString(undefined, { day: "numeric", month: "short" })}`;
}

/** @param {number} bytes @returns {string} "1.4 MB" */
export function fileSize(bytes) {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** @param {string} name @returns {string} one or two letters for an avatar */
export function initials(name) {
  const parts = String(name).split(/[\s._-]+/).filter(Boolean);
  if (parts.length === 0) return "?";
  const first = [...parts[0]][0] ?? "?";
  const second = parts.length > 1 ? [...parts[1]][0] ?? "" : "";
  return (first + second).toUpperCase();
}

/**
 * A stable hue for a name, so a person's avatar keeps its colour everywhere.
 * @param {string} name
 * @returns {number} 0..359
 */
export function hueOf(name) {
  let h = 0;
  for (const ch of String(name).toLowerCase()) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

/**
 * The tab title: the unread count first, so it shows in a narrow tab.
 * @param {number} unread
 * @param {string | null} [open] the open conversation's name
 */
export function tabTitle(unread, open) {
  const base = open ? `${open} · chatgroup` : "chatgroup";
  return unread > 0 ? `(${unread > 99 ? "99+" : unread}) ${base}` : base;
}

/**
 * The preview line of a conversation in the list.
 * @param {{kind?: string, body: string, sender: number, senderName?: string, file?: {name: string}} | null | undefined} message
 * @param {number} me
 * @param {boolean} group whether to name the sender
 */
export function previewText(message, me, group) {
  if (!message) return "No messages yet";
  if (message.kind === "system") return message.body;
  const what = message.kind === "file" ? `📎 ${message.file?.name ?? message.body}` : message.body;
  const line = what.replace(/\s+/g, " ").trim();
  if (message.sender === me) return `You: ${line}`;
  return group && message.senderName ? `${message.senderName}: ${line}` : line;
}

/**
 * "bob is typing…", "bob and carol are typing…", "3 people are typing…".
 * @param {string[]} names
 */
export function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

/** The words for a tick state, for the tooltip and screen readers. */
export const STATUS_WORDS = {
  sending: "Sending",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  failed: "Not sent",
};
