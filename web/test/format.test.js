import { test } from "node:test";
import assert from "node:assert/strict";
import { dayKey, dayLabel, fileSize, initials, hueOf, tabTitle, previewText, typingText, lastSeenText } from "../js/app/format.js";

const noon = new Date(2026, 11, 2, 12, 0).getTime();
const DAY = 86_400_000;

test("days: today, yesterday, a weekday, then the date", () => {
  assert.equal(dayLabel(noon - 3600_000, noon), "Today");
  assert.equal(dayLabel(noon - DAY, noon), "Yesterday");
  assert.equal(dayLabel(noon - 3 * DAY, noon), new Date(noon - 3 * DAY).toLocaleDateString(undefined, { weekday: "long" }));
  assert.notEqual(dayKey(noon), dayKey(noon - DAY));
  assert.equal(dayKey(new Date(2026, 0, 5, 23, 59).getTime()), "2026-01-05");
});

test("sizes, initials, a stable colour per name", () => {
  assert.equal(fileSize(999), "999 B");
  assert.equal(fileSize(200_000), "200 kB");
  assert.equal(fileSize(1_400_000), "1.4 MB");
  assert.equal(initials("weekend trip"), "WT");
  assert.equal(initials("bob"), "B");
  assert.equal(initials(""), "?");
  assert.equal(hueOf("Alice"), hueOf("alice"));
  assert.ok(hueOf("alice") >= 0 && hueOf("alice") < 360);
});

test("the tab title leads with the unread count", () => {
  assert.equal(tabTitle(0), "chatgroup");
  assert.equal(tabTitle(3, "bob"), "(3) bob · chatgroup");
  assert.equal(tabTitle(250), "(99+) chatgroup");
});

test("previews, typing lines and last seen", () => {
  assert.equal(previewText(null, 1, false), "No messages yet");
  assert.equal(previewText({ sender: 1, body: "hi\nthere", kind: "text" }, 1, true), "You: hi there");
  assert.equal(previewText({ sender: 2, senderName: "bob", body: "yo", kind: "text" }, 1, true), "bob: yo");
  assert.equal(previewText({ sender: 2, senderName: "bob", body: "yo", kind: "text" }, 1, false), "yo");
  assert.equal(previewText({ sender: 2, body: "x.pdf", kind: "file", file: { name: "x.pdf" } }, 1, false), "📎 x.pdf");
  assert.equal(typingText([]), "");
  assert.equal(typingText(["bob"]), "bob is typing…");
  assert.equal(typingText(["bob", "carol"]), "bob and carol are typing…");
  assert.equal(typingText(["a", "b", "c"]), "3 people are typing…");
  assert.equal(lastSeenText(null, noon), "offline");
  assert.equal(lastSeenText(noon - 5 * 60_000, noon), "last seen 5 min ago");
});
