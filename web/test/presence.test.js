import { test } from "node:test";
import assert from "node:assert/strict";
import { Presence } from "../js/presence.js";

test("presence and user_list build the online map", () => {
  const p = new Presence();
  assert.deepEqual(p.get(2), { online: false, lastSeen: null });
  p.apply({ type: "presence", user: 2, online: true });
  assert.equal(p.get(2).online, true);
  p.apply({ type: "presence", user: 2, online: false, lastSeen: 1234 });
  assert.deepEqual(p.get(2), { online: false, lastSeen: 1234 });
  p.applyUserList({
    conversation: 7,
    members: [
      { id: 2, online: true },
      { id: 3, online: false, lastSeen: 99 },
    ],
  });
  assert.deepEqual(p.get(2), { online: true, lastSeen: 1234 });
  assert.deepEqual(p.get(3), { online: false, lastSeen: 99 });
  assert.equal(p.userListRequest(7), null, "already watched");
  assert.deepEqual(p.userListRequest(8, "u"), { type: "user_list", conversation: 8, ref: "u" });
});

test("a new connection starts everyone offline and asks for the watch again", () => {
  const changed = [];
  const p = new Presence({ onChange: (u) => changed.push(u) });
  p.applyUserList({ conversation: 7, members: [{ id: 2, online: true }, { id: 3, online: false }] });
  changed.length = 0;
  p.reset();
  assert.equal(p.get(2).online, false);
  assert.deepEqual(changed, [2]);
  assert.deepEqual(p.userListRequest(7), { type: "user_list", conversation: 7 });
});
