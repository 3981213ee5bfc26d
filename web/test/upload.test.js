import { test } from "node:test";
import assert from "node:assert/strict";
import { chunkFrame, planChunks, uploadFrames, CHUNK_HEADER_LEN } from "../js/upload.js";

test("a chunk's header is fileId and offset, big-endian u64 (the protocol's example)", () => {
  const frame = chunkFrame(12, 65536, new Uint8Array([0xaa, 0xbb]));
  assert.deepEqual(
    [...frame],
    [0, 0, 0, 0, 0, 0, 0, 0x0c, 0, 0, 0, 0, 0, 1, 0, 0, 0xaa, 0xbb],
  );
  assert.equal(CHUNK_HEADER_LEN, 16);
});

test("chunks cover the file from the offset to the end, each at most chunkSize", () => {
  assert.deepEqual(planChunks(70000, 0, 65536), [
    { offset: 0, length: 65536 },
    { offset: 65536, length: 4464 },
  ]);
  assert.deepEqual(planChunks(70000, 65536, 65536), [{ offset: 65536, length: 4464 }], "resume");
  assert.deepEqual(planChunks(70000, 70000, 65536), [], "already complete");
  assert.deepEqual(planChunks(0, 0, 65536), []);
  assert.throws(() => planChunks(10, 0, 0), RangeError);
});

test("frames from a Blob and from bytes carry the right slices, resuming mid-file", async () => {
  const bytes = new Uint8Array(10);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i;
  for (const source of [new Blob([bytes]), bytes, bytes.buffer]) {
    const frames = [];
    for await (const f of uploadFrames(source, { fileId: 1, offset: 3, chunkSize: 4 })) frames.push(f);
    assert.deepEqual(frames.map((f) => f.offset), [3, 7]);
    assert.deepEqual([...frames[0].frame.subarray(16)], [3, 4, 5, 6]);
    assert.deepEqual([...frames[1].frame.subarray(16)], [7, 8, 9]);
    assert.equal(new DataView(frames[1].frame.buffer).getBigUint64(8), 7n);
  }
});
