/**
 * The rate limiter on an injected clock (no sleeps): GCRA's counts, remaining and reset
 * values, the header strings, and the memory bound under a flood of distinct keys.
 */
import assert from "node:assert/strict";
import { rateLimitSchema } from "../../src/config/routes.ts";
import {
  MAX_KEY_LENGTH,
  type RateDecision,
  RateLimiter,
  type RateLimiterOptions,
} from "../../src/routing/rate_limit.ts";

/** A limiter for a rateLimit block as lb.yaml would write it (the schema fills defaults). */
function limiter(input: Record<string, unknown>, opts?: RateLimiterOptions): RateLimiter {
  return new RateLimiter(rateLimitSchema.parse(input), "test", opts);
}

/** How many of `n` takes of `key` at `now` are allowed. */
function allowedOf(l: RateLimiter, key: string, now: number, n: number): number {
  let allowed = 0;
  for (let i = 0; i < n; i++) if (l.take(key, now).allowed) allowed++;
  return allowed;
}

/** The next take of `key` at `now`, asserted to be refused. */
function refused(l: RateLimiter, key: string, now: number): RateDecision {
  const d = l.take(key, now);
  assert.equal(d.allowed, false, `a take of ${key} at ${now} should be refused`);
  return d;
}

Deno.test("a fresh key may send burst requests at once, and the next is refused with a retry-after of at least 1 s", () => {
  const l = limiter({ rate: 5, per: "1s" });
  assert.equal(allowedOf(l, "a", 0, 5), 5);
  const d = refused(l, "a", 0);
  assert.deepEqual(d, { allowed: false, remaining: 0, resetSeconds: 1, retryAfterSeconds: 1 });

  const slow = limiter({ rate: 1, per: "10s", burst: 2 });
  assert.equal(allowedOf(slow, "a", 0, 2), 2);
  assert.equal(refused(slow, "a", 0).retryAfterSeconds, 10);
});

Deno.test("tokens come back at rate per per: in the 400 ms after a 5-per-second bucket is drained, exactly 2 more are allowed", () => {
  const l = limiter({ rate: 5, per: "1s" });
  assert.equal(allowedOf(l, "a", 1000, 5), 5);
  assert.equal(allowedOf(l, "a", 1399, 5), 1);
  assert.equal(allowedOf(l, "a", 1400, 5), 1);
  // Once a whole `per` has passed since the last allowed request, the bucket is full again.
  assert.equal(allowedOf(l, "a", 2400, 10), 5);
});

Deno.test("separate keys have separate buckets", () => {
  const l = limiter({ rate: 2, per: "1m" });
  assert.equal(allowedOf(l, "10.0.0.1", 0, 5), 2);
  assert.equal(allowedOf(l, "10.0.0.2", 0, 5), 2);
  assert.equal(allowedOf(l, "10.0.0.1", 1, 1), 0);
  assert.equal(l.size, 2);
});

Deno.test("remaining counts down by one per request and reset says when the bucket is full again", () => {
  // One token every 2 s, three at most: the bucket is full 6 s after it is drained.
  const l = limiter({ rate: 1, per: "2s", burst: 3 });
  const at = (now: number) => {
    const d = l.take("a", now);
    return [d.allowed, d.remaining, d.resetSeconds, d.retryAfterSeconds];
  };
  assert.deepEqual(at(0), [true, 2, 2, 0]);
  assert.deepEqual(at(0), [true, 1, 4, 0]);
  assert.deepEqual(at(0), [true, 0, 6, 0]);
  assert.deepEqual(at(0), [false, 0, 6, 2]);
  assert.deepEqual(at(1500), [false, 0, 5, 1]);
  assert.deepEqual(at(2000), [true, 0, 6, 0]);
  assert.deepEqual(at(7000), [true, 1, 3, 0]);
});

Deno.test("the RateLimit-Policy and RateLimit headers are draft-10 structured fields", () => {
  const l = new RateLimiter(rateLimitSchema.parse({ rate: 1, per: "2s", burst: 3 }), "api");
  assert.equal(l.policyHeader, `"api";q=3;w=6`);
  assert.equal(l.header(l.take("a", 0)), `"api";r=2;t=2`);
  assert.equal(l.header(l.take("a", 0)), `"api";r=1;t=4`);
  l.take("a", 0);
  assert.equal(l.header(l.take("a", 0)), `"api";r=0;t=6`);

  // A window shorter than a second still says 1: w is a whole number of seconds ≥ 1.
  const fast = new RateLimiter(rateLimitSchema.parse({ rate: 10, per: "1s", burst: 5 }), "f");
  assert.equal(fast.policyHeader, `"f";q=5;w=1`);
  // An hour's window, rounded up: 100 per hour refills 1 token every 36 s.
  const hourly = new RateLimiter(rateLimitSchema.parse({ rate: 100, per: "1h", burst: 7 }), "h");
  assert.equal(hourly.policyHeader, `"h";q=7;w=252`);
});

Deno.test('a policy name is quoted with \\ and " escaped, and one outside printable ASCII is refused', () => {
  const config = rateLimitSchema.parse({ rate: 1 });
  assert.equal(new RateLimiter(config, `a"b\\c`).policyHeader, `"a\\"b\\\\c";q=1;w=1`);
  assert.throws(() => new RateLimiter(config, "caf\u00e9"), RangeError);
  assert.throws(() => new RateLimiter(config, "a\nb"), RangeError);
});

Deno.test("a refused request takes nothing: hammering a drained bucket does not delay the next token", () => {
  const l = limiter({ rate: 2, per: "1s" });
  assert.equal(allowedOf(l, "a", 0, 2), 2);
  assert.equal(allowedOf(l, "a", 100, 1000), 0);
  assert.equal(allowedOf(l, "a", 499, 1000), 0);
  assert.equal(allowedOf(l, "a", 500, 1000), 1);
});

Deno.test("fractional intervals: 3 per second allows 3 at once, then one more every 333⅓ ms", () => {
  // From a performance.now()-like and a Date.now()-like start: the clock's size must not
  // matter. (Starts exact in binary, so that t0 + 1000 - t0 is exactly 1000.)
  for (const t0 of [1234.5, 1_700_000_000_123]) {
    const l = limiter({ rate: 3, per: "1s" });
    assert.equal(allowedOf(l, "a", t0, 5), 3, `at ${t0}`);
    assert.equal(allowedOf(l, "a", t0 + 333, 5), 0, `at ${t0} + 333`);
    assert.equal(allowedOf(l, "a", t0 + 334, 5), 1, `at ${t0} + 334`);
    assert.equal(allowedOf(l, "a", t0 + 666, 5), 0, `at ${t0} + 666`);
    assert.equal(allowedOf(l, "a", t0 + 667, 5), 1, `at ${t0} + 667`);
    assert.equal(allowedOf(l, "a", t0 + 1000, 5), 1, `at ${t0} + 1000`);
    assert.equal(allowedOf(l, "a", t0 + 2000, 5), 3, `at ${t0} + 2000`);
  }
});

Deno.test("a million distinct keys keep the limiter at maxKeys buckets", () => {
  const l = limiter({ rate: 10, per: "1s", maxKeys: 10_000 });
  let most = 0;
  for (let i = 0; i < 1_000_000; i++) {
    // 1 µs apart, so a key's bucket (full again after 100 ms) outlives 100,000 others.
    const d = l.take(`203.0.${i >> 16}.${i & 0xffff}`, i / 1000);
    assert.equal(d.allowed, true);
    if (l.size > most) most = l.size;
  }
  assert.equal(most, 10_000);
  assert.equal(l.size, 10_000);
});

Deno.test("a key evicted at the cap starts again with a full bucket (the limiter fails open, never stricter)", () => {
  const l = limiter({ rate: 2, per: "1h", maxKeys: 3 });
  assert.equal(allowedOf(l, "first", 0, 3), 2);
  for (const k of ["b", "c", "d"]) l.take(k, 1);
  assert.equal(l.size, 3);
  assert.equal(allowedOf(l, "first", 2, 3), 2);
});

Deno.test("expired buckets are swept: some as new keys arrive, the rest by the full sweep after sweepEveryMs", () => {
  const l = limiter({ rate: 10, per: "1s" }, { sweepEveryMs: 10_000 });
  for (let i = 0; i < 5000; i++) l.take(`old-${i}`, 0);
  assert.equal(l.size, 5000);
  // Every old bucket is full again 100 ms later; known keys do not sweep.
  l.take("old-0", 5000);
  assert.equal(l.size, 5000);
  for (let i = 0; i < 100; i++) l.take(`new-${i}`, 5000);
  assert.ok(l.size < 5000, `the sweep hand dropped some expired keys (size ${l.size})`);
  l.take("new-0", 9_900);
  assert.ok(l.size > 100, "no full sweep before sweepEveryMs");
  l.take("late", 10_000);
  assert.equal(l.size, 1);
});

Deno.test("a full sweep keeps a live key's debt: it is refused until its token comes back", () => {
  const l = limiter({ rate: 1, per: "1m" }, { sweepEveryMs: 10_000 });
  assert.equal(l.take("a", 0).allowed, true);
  l.take("other", 10_000.5);
  assert.equal(refused(l, "a", 10_000.5).retryAfterSeconds, 50);
  l.take("other", 35_000.25);
  refused(l, "a", 59_999);
  assert.equal(l.take("a", 60_000).allowed, true);
});

Deno.test("tick counts stay exact over years of uptime at the highest rate the schema allows", () => {
  // 1,000,000 per ms: one tick per request. Counted from the first take, ticks would pass
  // 2^53 after 104 days and TAT + 1 would round back to TAT: every request allowed.
  const l = limiter({ rate: 1_000_000, per: 1, burst: 1 });
  const day = 86_400_000;
  for (let d = 0; d < 1000; d += 7) {
    assert.equal(l.take("a", d * day).allowed, true, `day ${d}`);
    refused(l, "a", d * day);
  }
});

Deno.test("keys longer than 256 characters share the bucket of their first 256", () => {
  const l = limiter({ rate: 1, per: "1m" });
  const head = "k".repeat(MAX_KEY_LENGTH);
  assert.equal(l.take(head + "one", 0).allowed, true);
  refused(l, head + "two", 0);
  refused(l, head, 0);
  assert.equal(l.take(head.slice(1), 0).allowed, true);
  assert.equal(l.size, 2);
});

Deno.test("close drops every bucket, and a later take starts with a full one", () => {
  const l = limiter({ rate: 1, per: "1m" });
  l.take("a", 0);
  l.take("b", 0);
  l.close();
  assert.equal(l.size, 0);
  assert.equal(l.take("a", 1).allowed, true);
});

Deno.test("a config a limiter cannot work with is refused with a RangeError naming the field", () => {
  const ok = rateLimitSchema.parse({ rate: 1 });
  const bad = (over: Record<string, unknown>, field: RegExp) =>
    assert.throws(() => new RateLimiter({ ...ok, ...over }, "p"), field);
  bad({ rate: 0 }, /^RangeError: rate/);
  bad({ per: Number.NaN }, /^RangeError: per/);
  bad({ burst: 0.5 }, /^RangeError: burst/);
  bad({ maxKeys: 0 }, /^RangeError: maxKeys/);
  assert.throws(() => new RateLimiter(ok, "p", { sweepEveryMs: -1 }), /sweepEveryMs/);
});
