import { test } from "node:test";
import assert from "node:assert/strict";
import { Cursors } from "../js/cursors.js";
import { MemoryStorage } from "../js/storage.js";

test("the sync after ready carries the stored cursors of the listed conversations", () => {
  const storage = new MemoryStorage();
  const c = new Cursors({ storage, userId: 1 });
  c.adoptEpoch("e1");
  c.applySynced({ 3: 40, 7: 0, 9: 5 });
  // Conversation 9 is gone from ready (left meanwhile): its cursor would earn not_member.
  assert.deepEqual(c.syncRequest([3, 7, 12], "s1"), { type: "sync", cursors: { 3: 40, 7: 0 }, ref: "s1" });
  assert.equal(c.get(9), undefined);
});

test("cursors survive a reload for the same user and epoch", () => {
  const storage = new MemoryStorage();
  const before = new Cursors({ storage, userId: 1 });
  before.adoptEpoch("e1");
  before.applySynced({ 3: 40 });
  before.observe(3, 41);
  const after = new Cursors({ storage, userId: 1 });
  assert.equal(after.adoptEpoch("e1"), false);
  assert.deepEqual(after.syncRequest([3]).cursors, { 3: 41 });
  // Another user on the same browser has their own.
  const other = new Cursors({ storage, userId: 2 });
  other.adoptEpoch("e1");
  assert.deepEqual(other.syncRequest([3]).cursors, {});
});

test("an epoch change drops every cursor (the database was reset)", () => {
  const storage = new MemoryStorage();
  const c = new Cursors({ storage, userId: 1 });
  assert.equal(c.adoptEpoch("e1"), false, "the first epoch is not a change");
  c.applySynced({ 3: 40, 7: 12 });
  const reloaded = new Cursors({ storage, userId: 1 });
  assert.equal(reloaded.adoptEpoch("e2"), true);
  assert.deepEqual(reloaded.syncRequest([3, 7]).cursors, {});
  assert.deepEqual(new Cursors({ storage, userId: 1 }).syncRequest([3, 7]).cursors, {}, "the drop is persisted");
});

test("a cursor only moves over a gap-free run of seqs", () => {
  const c = new Cursors({ storage: new MemoryStorage(), userId: 1 });
  c.adoptEpoch("e1");
  c.applySynced({ 3: 40 });
  c.observe(3, 43); // live, ahead of the replay
  c.observe(3, 42);
  assert.equal(c.get(3), 40, "41 is still missing");
  c.observe(3, 41);
  assert.equal(c.get(3), 43);
  c.observe(3, 43); // duplicate
  c.observe(3, 12); // history page
  assert.equal(c.get(3), 43);
});

test("synced sets the cursors, then takes in what arrived beyond them", () => {
  const c = new Cursors({ storage: new MemoryStorage(), userId: 1 });
  c.adoptEpoch("e1");
  c.applySynced({ 3: 10 });
  c.observe(3, 21);
  c.observe(3, 22);
  c.applySynced({ 3: 20 });
  assert.equal(c.get(3), 22);
  // The server's figure wins even when lower (a cursor that claimed too much is clamped).
  c.applySynced({ 3: 5 });
  assert.equal(c.get(3), 5);
});

test("a conversation without a cursor starts one at its first message; forget drops it", () => {
  const storage = new MemoryStorage();
  const c = new Cursors({ storage, userId: 1 });
  c.adoptEpoch("e1");
  c.observe(8, 17); // joined live: the first message is the join
  c.observe(8, 18);
  assert.equal(c.get(8), 18);
  c.forget(8);
  assert.deepEqual(new Cursors({ storage, userId: 1 }).syncRequest([8]).cursors, {});
});

test("a corrupt stored value is ignored, not fatal", () => {
  const storage = new MemoryStorage();
  storage.setItem("chatgroup.cursors.1", "{not json");
  const c = new Cursors({ storage, userId: 1 });
  c.adoptEpoch("e1");
  assert.deepEqual(c.syncRequest([3]).cursors, {});
});
