// Splitting a file into the chat socket's binary chunks (docs/protocol.md, Files).

/** Bytes before each chunk's data: fileId and offset, both u64 big-endian. */
export const CHUNK_HEADER_LEN = 16;

/**
 * One binary frame: the 16-byte header followed by `data`.
 * @param {number} fileId from `file_ready`
 * @param {number} offset where `data` starts in the file
 * @param {Uint8Array} data at most `chunkSize` bytes
 * @returns {Uint8Array}
 */
export function chunkFrame(fileId, offset, data) {
  const frame = new Uint8Array(CHUNK_HEADER_LEN + data.byteLength);
  const view = new DataView(frame.buffer);
  view.setBigUint64(0, BigInt(fileId), false);
  view.setBigUint64(8, BigInt(offset), false);
  frame.set(data, CHUNK_HEADER_LEN);
  return frame;
}

/**
 * The chunks still to send, as `{offset, length}`, from `offset` (a `file_ready`'s: 0 for a new
 * upload, more when resuming) to the end.
 * @param {number} size the file's size
 * @param {number} offset
 * @param {number} chunkSize from `file_ready`
 * @returns {{offset: number, length: number}[]}
 */
export function planChunks(size, offset, chunkSize) {
  if (!(chunkSize > 0)) throw new RangeError("chunkSize must be positive");
  const chunks = [];
  for (let at = Math.max(0, offset); at < size; at += chunkSize) {
    chunks.push({ offset: at, length: Math.min(chunkSize, size - at) });
  }
  return chunks;
}

/**
 * The binary frames of an upload from `offset` on, read lazily so a large file is never held
 * in memory at once.
 * @param {Blob | ArrayBuffer | Uint8Array} source
 * @param {{fileId: number, offset: number, chunkSize: number}} ready the `file_ready`
 * @returns {AsyncGenerator<{offset: number, frame: Uint8Array}>}
 */
export async function* uploadFrames(source, ready) {
  const size = source.size ?? source.byteLength;
  for (const chunk of planChunks(size, ready.offset, ready.chunkSize)) {
    const end = chunk.offset + chunk.length;
    let data;
    if (typeof source.arrayBuffer === "function" && typeof source.slice === "function" && source.size != null) {
      data = new Uint8Array(await source.slice(chunk.offset, end).arrayBuffer());
    } else if (source instanceof ArrayBuffer) {
      data = new Uint8Array(source, chunk.offset, chunk.length);
    } else {
      data = source.subarray(chunk.offset, end);
    }
    yield { offset: chunk.offset, frame: chunkFrame(ready.fileId, chunk.offset, data) };
  }
}
