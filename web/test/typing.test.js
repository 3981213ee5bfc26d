import { test } from "node:test";
import assert from "node:assert/strict";
import { TypingIndicators, TypingReporter } from "../js/typing.js";
import { FakeTime, recorder } from "../testing/fakes.js";

test("a typing indicator lapses after 6 s unless repeated", () => {
  const time = new FakeTime();
  const t = new TypingIndicators({ timers: time.timers });
  t.apply({ conversation: 3, user: 2, state: "start" });
  time.advance(4000);
  t.apply({ conversation: 3, user: 2, state: "start" }); // repeat keeps it alive
  time.advance(5999);
  assert.deepEqual(t.typers(3), [2]);
  time.advance(1);
  assert.deepEqual(t.typers(3), []);
});

test("stop and the typist's own message clear it; others stay", () => {
  const time = new FakeTime();
  const changes = [];
  const t = new TypingIndicators({ timers: time.timers, onChange: (c) => changes.push(c) });
  t.apply({ conversation: 3, user: 2, state: "start" });
  t.apply({ conversation: 3, user: 4, state: "start" });
  t.apply({ conversation: 5, user: 2, state: "start" });
  assert.deepEqual(t.typers(3), [2, 4]);
  t.noteMessage({ conversation: 3, sender: 2 });
  assert.deepEqual(t.typers(3), [4]);
  assert.deepEqual(t.typers(5), [2], "per conversation");
  t.apply({ conversation: 3, user: 4, state: "stop" });
  assert.deepEqual(t.typers(3), []);
  assert.deepEqual(changes, [3, 3, 5, 3, 3]);
  t.clear();
  assert.deepEqual(t.typers(5), []);
  assert.equal(time.timerCount, 0, "no lapse timer left behind");
});

test("outgoing start at most every 2.5 s while typing, stop after a pause", () => {
  const time = new FakeTime();
  const { frames, send } = recorder();
  const r = new TypingReporter({ send, timers: time.timers, now: time.now });
  for (let i = 0; i < 30; i++) {
    r.input(3);
    time.advance(200); // a keystroke every 200 ms for 6 s
  }
  assert.deepEqual(
    frames.map((f) => f.state),
    ["start", "start", "start"],
    "starts at 0, 2.6 and 5.2 s",
  );
  time.advance(4000);
  assert.deepEqual(frames.at(-1), { type: "typing", conversation: 3, state: "stop" });
  assert.equal(frames.length, 4);
});

test("clearing the input sends stop; sending resets without a frame (the server stops it)", () => {
  const time = new FakeTime();
  const { frames, send } = recorder();
  const r = new TypingReporter({ send, timers: time.timers, now: time.now });
  r.input(3);
  r.cleared(3);
  assert.deepEqual(frames.map((f) => f.state), ["start", "stop"]);
  r.cleared(3);
  assert.equal(frames.length, 2, "no second stop");
  r.input(3);
  time.advance(500);
  r.sent(3);
  time.advance(10_000);
  assert.deepEqual(frames.map((f) => f.state), ["start", "stop", "start"]);
  r.input(3); // right after sending: a new start at once, not throttled
  assert.deepEqual(frames.map((f) => f.state), ["start", "stop", "start", "start"]);
});
