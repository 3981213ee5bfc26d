// Which messages of a conversation are in the DOM: a window that slides over the timeline, so a
// conversation of 10,000 messages costs the page no more than one of 200.

/**
 * A message's stable key across everything that happens to it: an own message keeps its key
 * from "sending" to "read" (its `localId`), whatever path confirmed it.
 * @param {{id?: number, sender?: number, localId?: string}} m
 * @returns {string}
 */
export function messageKey(m) {
  return m.localId != null && m.sender != null ? `m:${m.sender}:${m.localId}` : `id:${m.id}`;
}

/**
 * Plans the window over `messages` (a timeline's, oldest first).
 *
 * The window is remembered by the keys of its ends, not by indices: older messages arriving in
 * front shift every index, not the keys. `endKey: null` means the window follows the newest
 * message (new ones join it; past `max`, the oldest rendered ones leave).
 *
 * @param {{id?: number, sender?: number, localId?: string}[]} messages
 * @param {{startKey: string | null, endKey: string | null}} current
 * @param {{step: number, max: number, extend?: "up" | "down"}} options `extend` adds `step`
 *   messages at that end (and drops from the other end beyond `max`)
 * @returns {{start: number, end: number, startKey: string | null, endKey: string | null}} the
 *   half-open range [start, end) to render, and the keys to remember
 */
export function planWindow(messages, current, { step, max, extend }) {
  const n = messages.length;
  const indexOf = (key) => {
    // Most lookups are near the end (live messages) or the start (history); scan from the end.
    for (let i = n - 1; i >= 0; i--) if (messageKey(messages[i]) === key) return i;
    return -1;
  };
  let end = n;
  if (current.endKey != null) {
    const i = indexOf(current.endKey);
    if (i >= 0) end = i + 1;
  }
  let start = Math.max(0, end - step);
  if (current.startKey != null) {
    const i = indexOf(current.startKey);
    if (i >= 0 && i <= end) start = i;
  }
  if (extend === "up") {
    start = Math.max(0, start - step);
    if (end - start > max) end = start + max;
  } else if (extend === "down") {
    end = Math.min(n, end + step);
    if (end - start > max) start = end - max;
  } else if (end - start > max) {
    if (current.endKey == null) start = end - max;
    else end = start + max;
  }
  return {
    start,
    end,
    startKey: n ? messageKey(messages[start]) : null,
    endKey: end >= n ? null : messageKey(messages[end - 1]),
  };
}
