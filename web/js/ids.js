// Client-side ids (`localId`, `uploadId`, `ref`).

/**
 * A random id for a `localId` or `uploadId` (unique per user, 1 to 64 bytes). Uses
 * `crypto.getRandomValues`, which unlike `crypto.randomUUID` also exists on pages served over
 * plain HTTP from a LAN address (not a secure context).
 * @param {string} [prefix]
 * @returns {string}
 */
export function randomId(prefix = "") {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  let hex = "";
  for (const b of bytes) hex += b.toString(16).padStart(2, "0");
  return prefix + hex;
}
