// Storage the client modules persist into: anything with localStorage's getItem/setItem/removeItem.

/**
 * An in-memory stand-in for `localStorage`, for tests and for browsers where `localStorage`
 * throws (some private modes, storage disabled by policy).
 */
export class MemoryStorage {
  constructor() {
    /** @type {Map<string, string>} */
    this.items = new Map();
  }

  /** @param {string} key @returns {string | null} */
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }

  /** @param {string} key @param {string} value */
  setItem(key, value) {
    this.items.set(key, String(value));
  }

  /** @param {string} key */
  removeItem(key) {
    this.items.delete(key);
  }
}

/**
 * The page's `localStorage` when it works, else a {@link MemoryStorage} (so the client still
 * runs, it just forgets across reloads).
 * @param {object} [scope] where to look for `localStorage` (default `globalThis`)
 */
export function browserStorage(scope = globalThis) {
  try {
    const storage = scope.localStorage;
    // Safari's private mode used to expose localStorage but throw on the first write.
    const probe = "chatgroup.probe";
    storage.setItem(probe, "1");
    storage.removeItem(probe);
    return storage;
  } catch {
    return new MemoryStorage();
  }
}

/**
 * Reads a JSON value, or `fallback` when it is missing or unreadable (a corrupt entry must not
 * keep the page from starting).
 * @template T
 * @param {{getItem(key: string): string | null}} storage
 * @param {string} key
 * @param {T} fallback
 * @returns {T}
 */
export function readJson(storage, key, fallback) {
  const text = storage.getItem(key);
  if (text == null) return fallback;
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
}

/**
 * Writes a JSON value. A full storage (quota) throws, and callers that must not lose data
 * (the outbox) let it propagate rather than pretend the write happened.
 * @param {{setItem(key: string, value: string): void}} storage
 * @param {string} key
 * @param {unknown} value
 */
export function writeJson(storage, key, value) {
  storage.setItem(key, JSON.stringify(value));
}
