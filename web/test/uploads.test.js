import { test } from "node:test";
import assert from "node:assert/strict";
import { Uploads } from "../js/app/uploads.js";
import { FakeTime } from "../testing/fakes.js";

const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

function setup({ sendOk = () => true } = {}) {
  const time = new FakeTime();
  const json = [];
  const frames = [];
  const uploads = new Uploads({
    sendJson: (m) => (json.push(m), true),
    sendBinary: (f) => {
      if (!sendOk()) return false;
      frames.push(f);
      return true;
    },
    timers: time.timers,
    now: time.now,
    newId: () => "f-1",
    digest: async () => "ab".repeat(32),
  });
  return { time, json, frames, uploads };
}

const offsetOf = (frame) => Number(new DataView(frame.buffer, frame.byteOffset).getBigUint64(8));
const blob = (n) => new Blob([new Uint8Array(n).map((_, i) => i % 251)], { type: "text/plain" });

test("start, chunks from file_ready's offset, then file_end; the ack finishes it", async () => {
  const { json, frames, uploads } = setup();
  uploads.attach();
  const file = Object.assign(blob(250), { name: "notes.txt" });
  await uploads.add(3, file);
  assert.deepEqual(json[0], { type: "file_start", conversation: 3, uploadId: "f-1", name: "notes.txt", size: 250, mime: "text/plain", sha256: "ab".repeat(32) });
  uploads.handleReady({ uploadId: "f-1", fileId: 12, offset: 0, chunkSize: 100 });
  await settle();
  assert.deepEqual(frames.map(offsetOf), [0, 100, 200]);
  assert.equal(frames[2].byteLength, 16 + 50);
  assert.deepEqual(json.at(-1), { type: "file_end", fileId: 12 });
  assert.equal(uploads.get("f-1").state, "finishing");
  assert.equal(uploads.handleAck({ localId: "f-1" }).fileId, 12);
  assert.equal(uploads.get("f-1"), undefined);
});

test("a dropped connection resumes with the same uploadId from the server's offset", async () => {
  let open = true;
  const { json, frames, uploads } = setup({ sendOk: () => open });
  uploads.attach();
  await uploads.add(3, Object.assign(blob(400), { name: "a.bin" }));
  // The socket dies after two chunks.
  let sent = 0;
  const sendOkAfter = () => sent++ < 2;
  open = true;
  uploads.sendBinary = (f) => (sendOkAfter() ? (frames.push(f), true) : false);
  uploads.handleReady({ uploadId: "f-1", fileId: 12, offset: 0, chunkSize: 100 });
  await settle();
  assert.deepEqual(frames.map(offsetOf), [0, 100]);
  uploads.detach();
  assert.equal(uploads.get("f-1").state, "waiting");
  uploads.sendBinary = (f) => (frames.push(f), true);
  uploads.attach();
  assert.equal(json.filter((m) => m.type === "file_start").length, 2);
  assert.equal(json.at(-1).uploadId, "f-1", "the same uploadId: a resume");
  // The server got only the first chunk.
  uploads.handleReady({ uploadId: "f-1", fileId: 12, offset: 100, chunkSize: 100 });
  await settle();
  assert.deepEqual(frames.map(offsetOf), [0, 100, 100, 200, 300]);
  assert.deepEqual(json.at(-1), { type: "file_end", fileId: 12 });
});

test("rate_limited waits for the file_ready after retryAfterMs; a final refusal fails the upload", async () => {
  const { time, frames, uploads } = setup();
  uploads.attach();
  await uploads.add(3, Object.assign(blob(300), { name: "a.bin" }));
  assert.equal(uploads.handleError({ code: "rate_limited", ref: "f-1", retryAfterMs: 50 }), true);
  uploads.handleReady({ uploadId: "f-1", fileId: 12, offset: 0, chunkSize: 100 });
  await settle();
  assert.equal(frames.length, 0, "not before the wait");
  time.advance(50);
  await settle();
  assert.equal(frames.length, 3);

  const other = setup();
  other.uploads.attach();
  await other.uploads.add(3, Object.assign(blob(10), { name: "big.iso" }));
  assert.equal(other.uploads.handleError({ code: "file_too_large", ref: "f-1" }), true);
  assert.equal(other.uploads.get("f-1").state, "failed");
  assert.equal(other.uploads.handleError({ code: "not_member", ref: "unrelated" }), false);
});

test("an upload added while offline starts on attach, after its hash", async () => {
  const { json, uploads } = setup();
  const pending = uploads.add(3, Object.assign(blob(10), { name: "a.bin" }));
  uploads.attach(); // still hashing: not started twice
  await pending;
  assert.equal(json.filter((m) => m.type === "file_start").length, 1);
  assert.equal(json[0].sha256, "ab".repeat(32));
});
