// Reconnect delays: exponential backoff with full jitter.

/**
 * Exponential backoff with "full jitter": attempt n waits a uniformly random time in
 * [0, min(cap, base * 2^n)). Spreading the whole range, rather than adding a little noise to a
 * fixed delay, is what keeps thousands of clients that lost the server at the same moment from
 * coming back in waves.
 */
export class Backoff {
  /**
   * @param {object} [options]
   * @param {number} [options.baseMs] ceiling of the first delay (1 s)
   * @param {number} [options.capMs] largest ceiling (30 s)
   * @param {() => number} [options.random] uniform in [0, 1) (`Math.random`; tests inject one)
   */
  constructor({ baseMs = 1000, capMs = 30000, random = Math.random } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.random = random;
    /** How many delays were handed out since the last reset. */
    this.attempt = 0;
  }

  /** The ceiling of the next delay, without consuming it. */
  ceilingMs() {
    // 2 ** attempt overflows to Infinity long after it passed the cap, so min() still works.
    return Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
  }

  /** The delay before the next attempt, in milliseconds; each call doubles the ceiling. */
  nextDelayMs() {
    const ceiling = this.ceilingMs();
    this.attempt += 1;
    const r = this.random();
    // Clamp a misbehaving source so the delay always stays inside its bounds.
    const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 0;
    return Math.floor(unit * ceiling);
  }

  /** Starts over from the base delay (after a connection that stayed up). */
  reset() {
    this.attempt = 0;
  }
}
