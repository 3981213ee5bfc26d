// Files on their way up: file_start → file_ready → binary chunks → file_end → ack, resumed
// after a dropped connection from the offset the server already holds.

import { uploadFrames } from "../upload.js";
import { randomId } from "../ids.js";

/** Refusals after which starting again cannot help. */
const FINAL_UPLOAD_ERRORS = new Set(["not_member", "not_found", "file_too_large", "quota_exceeded", "invalid", "malformed"]);

/** Stop handing chunks to the socket while this much is still buffered in it. */
const HIGH_WATER_BYTES = 1 << 20;

/**
 * One upload, as the chat view shows it (a file message with a progress bar).
 * @typedef {{uploadId: string, conversation: number, file: Blob, name: string, size: number,
 *            mime: string, sha256?: string, state: "hashing" | "waiting" | "uploading" | "finishing" | "failed",
 *            sent: number, fileId: number | null, chunkSize: number, error?: string,
 *            gen: number, restarts: number, createdAt: number, resumeAt: number}} Upload
 */

/**
 * The uploads of this page. They live in memory only: a `File` cannot be kept across a reload,
 * but a dropped connection resumes where the server stopped (same `uploadId`, its `offset`).
 */
export class Uploads {
  /**
   * @param {object} options
   * @param {(msg: object) => boolean} options.sendJson
   * @param {(frame: Uint8Array) => boolean} options.sendBinary
   * @param {() => number} [options.bufferedAmount] the socket's unsent bytes
   * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers]
   * @param {() => number} [options.now]
   * @param {() => string} [options.newId]
   * @param {(blob: Blob) => Promise<string | undefined>} [options.digest] hex SHA-256, or undefined
   * @param {(upload: Upload) => void} [options.onChange]
   */
  constructor(options) {
    this.sendJson = options.sendJson;
    this.sendBinary = options.sendBinary;
    this.bufferedAmount = options.bufferedAmount ?? (() => 0);
    this.timers = options.timers ?? { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (id) => clearTimeout(id) };
    this.now = options.now ?? (() => Date.now());
    this.newId = options.newId ?? (() => randomId("f-"));
    this.digest = options.digest ?? (async () => undefined);
    this.onChange = options.onChange ?? (() => {});
    /** @type {Map<string, Upload>} */
    this.items = new Map();
    this.attached = false;
  }

  /** @param {string} uploadId @returns {Upload | undefined} */
  get(uploadId) {
    return this.items.get(uploadId);
  }

  /** @param {number} conversation @returns {Upload[]} */
  of(conversation) {
    return [...this.items.values()].filter((u) => u.conversation === conversation);
  }

  /**
   * Queues a file for a conversation; it starts as soon as the connection is ready.
   * @param {number} conversation
   * @param {Blob & {name?: string}} file
   * @returns {Promise<Upload>}
   */
  async add(conversation, file) {
    const upload = {
      uploadId: this.newId(),
      conversation,
      file,
      name: file.name || "file",
      size: file.size,
      mime: file.type || "application/octet-stream",
      state: "hashing",
      sent: 0,
      fileId: null,
      chunkSize: 0,
      gen: 0,
      restarts: 0,
      createdAt: this.now(),
      resumeAt: 0,
    };
    this.items.set(upload.uploadId, upload);
    this.onChange(upload);
    try {
      upload.sha256 = await this.digest(file);
    } catch {
      // The hash is optional; without it the server checks the size only.
    }
    upload.state = "waiting";
    if (this.attached && this.items.has(upload.uploadId)) this.start(upload);
    return upload;
  }

  /** The connection is ready: start or resume every upload. */
  attach() {
    this.attached = true;
    for (const upload of this.items.values()) if (upload.state !== "failed" && upload.state !== "hashing") this.start(upload);
  }

  /** The connection is gone: every pump stops where it is. */
  detach() {
    this.attached = false;
    for (const upload of this.items.values()) {
      upload.gen += 1;
      if (upload.state !== "failed" && upload.state !== "hashing") {
        upload.state = "waiting";
        this.onChange(upload);
      }
    }
  }

  /** Forgets an upload (cancelled, or failed and dismissed). @param {string} uploadId */
  cancel(uploadId) {
    const upload = this.items.get(uploadId);
    if (!upload) return;
    upload.gen += 1;
    this.items.delete(uploadId);
  }

  /** Tries a failed upload again from the start. @param {string} uploadId */
  retry(uploadId) {
    const upload = this.items.get(uploadId);
    if (!upload || upload.state !== "failed") return;
    upload.state = "waiting";
    upload.error = undefined;
    upload.restarts = 0;
    this.onChange(upload);
    if (this.attached) this.start(upload);
  }

  start(upload) {
    upload.gen += 1;
    upload.state = "waiting";
    const frame = { type: "file_start", conversation: upload.conversation, uploadId: upload.uploadId, name: upload.name, size: upload.size, mime: upload.mime };
    if (upload.sha256) frame.sha256 = upload.sha256;
    this.sendJson(frame);
  }

  /**
   * A `file_ready`: send the bytes from its offset.
   * @param {{uploadId: string, fileId: number, offset: number, chunkSize: number}} msg
   * @returns {boolean} whether it was about one of these uploads
   */
  handleReady(msg) {
    const upload = this.items.get(msg.uploadId);
    if (!upload || upload.state === "failed") return Boolean(upload);
    upload.fileId = msg.fileId;
    upload.chunkSize = msg.chunkSize;
    upload.sent = Math.min(msg.offset, upload.size);
    const gen = ++upload.gen;
    const wait = Math.max(0, upload.resumeAt - this.now());
    if (wait > 0) {
      this.timers.setTimeout(() => {
        if (upload.gen === gen) this.pump(upload, gen);
      }, wait);
    } else {
      this.pump(upload, gen);
    }
    return true;
  }

  /**
   * An `error` whose `ref` may be an upload's id.
   * @param {{code: string, ref?: string, retryAfterMs?: number}} error
   * @returns {boolean} whether it was about one of these uploads
   */
  handleError(error) {
    const upload = error.ref == null ? undefined : this.items.get(String(error.ref));
    if (!upload) return false;
    if (error.code === "rate_limited") {
      // The server follows with a file_ready naming the offset to go on from, after the wait.
      upload.gen += 1;
      upload.resumeAt = this.now() + (error.retryAfterMs ?? 1000);
      return true;
    }
    if (error.code === "file_mismatch" && upload.restarts < 2) {
      // Fewer bytes than announced arrived (a chunk lost with a connection): ask where to go on.
      upload.restarts += 1;
      if (this.attached) this.start(upload);
      return true;
    }
    if (FINAL_UPLOAD_ERRORS.has(error.code) || error.code === "file_mismatch") {
      upload.gen += 1;
      upload.state = "failed";
      upload.error = error.code;
      this.onChange(upload);
      return true;
    }
    // internal, unavailable: try again shortly.
    upload.gen += 1;
    const gen = upload.gen;
    this.timers.setTimeout(() => {
      if (upload.gen === gen && this.attached) this.start(upload);
    }, 2000);
    return true;
  }

  /**
   * An `ack`: if it is an upload's, the upload is done.
   * @param {{localId: string}} ack
   * @returns {Upload | null}
   */
  handleAck(ack) {
    const upload = this.items.get(ack.localId);
    if (!upload) return null;
    upload.gen += 1;
    this.items.delete(ack.localId);
    return upload;
  }

  async pump(upload, gen) {
    upload.state = "uploading";
    this.onChange(upload);
    try {
      for await (const { offset, frame } of uploadFrames(upload.file, { fileId: upload.fileId, offset: upload.sent, chunkSize: upload.chunkSize })) {
        while (this.bufferedAmount() > HIGH_WATER_BYTES) {
          await new Promise((resolve) => this.timers.setTimeout(resolve, 15));
          if (upload.gen !== gen) return;
        }
        if (upload.gen !== gen) return;
        if (!this.sendBinary(frame)) return; // the socket went away; attach() starts over
        upload.sent = offset + frame.byteLength - 16;
        this.onChange(upload);
      }
    } catch {
      upload.gen += 1;
      upload.state = "failed";
      upload.error = "unreadable";
      this.onChange(upload);
      return;
    }
    if (upload.gen !== gen) return;
    upload.state = "finishing";
    this.onChange(upload);
    this.sendJson({ type: "file_end", fileId: upload.fileId });
  }
}

/**
 * The hex SHA-256 of a blob with WebCrypto, when the page has it (a secure context) and the
 * file is small enough to read at once; else undefined (the hash is optional).
 * @param {Blob} blob
 * @returns {Promise<string | undefined>}
 */
export async function sha256Hex(blob) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle || blob.size > 64 * 1024 * 1024) return undefined;
  const digest = new Uint8Array(await subtle.digest("SHA-256", await blob.arrayBuffer()));
  let hex = "";
  for (const b of digest) hex += b.toString(16).padStart(2, "0");
  return hex;
}
