import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff } from "../js/backoff.js";

test("ceilings double from 1 s and stop at 30 s", () => {
  const backoff = new Backoff({ random: () => 0.999999 });
  const ceilings = [];
  for (let i = 0; i < 8; i++) {
    ceilings.push(backoff.ceilingMs());
    backoff.nextDelayMs();
  }
  assert.deepEqual(ceilings, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test("full jitter: a delay is the random fraction of its ceiling", () => {
  const backoff = new Backoff({ random: () => 0.5 });
  assert.deepEqual(
    Array.from({ length: 7 }, () => backoff.nextDelayMs()),
    [500, 1000, 2000, 4000, 8000, 15000, 15000],
  );
});

test("delays stay within [0, ceiling) for any random value, including the extremes", () => {
  const backoff = new Backoff({ random: Math.random });
  for (let i = 0; i < 200; i++) {
    const ceiling = backoff.ceilingMs();
    const delay = backoff.nextDelayMs();
    assert.ok(delay >= 0 && delay < ceiling, `attempt ${i}: ${delay} not in [0, ${ceiling})`);
  }
  const zero = new Backoff({ random: () => 0 });
  assert.equal(zero.nextDelayMs(), 0);
  // A broken source cannot push a delay out of bounds.
  for (const bad of [-1, 7, NaN]) {
    const d = new Backoff({ random: () => bad }).nextDelayMs();
    assert.ok(d >= 0 && d <= 1000, `random ${bad} gave ${d}`);
  }
});

test("jitter spreads delays over the whole range, not around the ceiling", () => {
  const backoff = new Backoff({ random: Math.random });
  backoff.attempt = 10; // at the cap
  const delays = Array.from({ length: 2000 }, () => {
    backoff.attempt = 10;
    return backoff.nextDelayMs();
  });
  assert.ok(delays.some((d) => d < 5000), "some delays in the lowest sixth");
  assert.ok(delays.some((d) => d > 25000), "some delays in the highest sixth");
});

test("reset starts over from the base", () => {
  const backoff = new Backoff({ random: () => 0.5 });
  backoff.nextDelayMs();
  backoff.nextDelayMs();
  backoff.nextDelayMs();
  backoff.reset();
  assert.equal(backoff.nextDelayMs(), 500);
});
