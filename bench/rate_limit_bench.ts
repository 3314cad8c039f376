/**
 * What one `RateLimiter.take` costs, and what a full limiter holds in memory.
 *
 *   deno bench bench/rate_limit_bench.ts                            time per take
 *   deno run --v8-flags=--expose-gc bench/rate_limit_bench.ts       bytes per key
 *
 * Memory is V8's used heap after a forced gc, before and after filling a limiter; without
 * --expose-gc it is read without one and is rougher.
 */
import { rateLimitSchema } from "../src/config/routes.ts";
import { RateLimiter } from "../src/routing/rate_limit.ts";

const KEYS = 100_000;
const keys = Array.from({ length: KEYS }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);

function limiter(input: Record<string, unknown>): RateLimiter {
  return new RateLimiter(rateLimitSchema.parse(input), "bench");
}

// A clock that moves 1 µs a take, as under a heavy load.
let now = 0;

const hot = limiter({ rate: 1_000_000, per: "1s" });
Deno.bench("take: one hot key, allowed", { group: "take" }, () => {
  hot.take("10.0.0.1", now += 0.001);
});

// A request's key is a new string each time, whose hash the Map lookup must compute (the
// octet comes from an array so that the compiler cannot fold the template into a constant).
const octets = ["1"];
Deno.bench("take: one hot key, a new string each call", { group: "take" }, () => {
  hot.take(`10.0.0.${octets[0]}`, now += 0.001);
});

const drained = limiter({ rate: 1, per: "1h" });
Deno.bench("take: one hot key, refused", { group: "take" }, () => {
  drained.take("10.0.0.1", now += 0.001);
});

// 100,000 keys in turn, each back 100 ms later (1 µs a take). Owing an hour, every key is
// still held when it comes back; refilled after 10 ms, most have been dropped by the sweep
// hand and are inserted again, as a key that has gone quiet is.
let k = 0;
const owing = limiter({ rate: 1, per: "1h", burst: 1_000_000, maxKeys: KEYS });
Deno.bench("take: 100,000 keys in turn, each still owing", { group: "take" }, () => {
  owing.take(keys[k++ % KEYS], now += 0.001);
});

let j = 0;
const refilled = limiter({ rate: 100, per: "1s", maxKeys: KEYS });
Deno.bench("take: 100,000 keys in turn, each refilled", { group: "take" }, () => {
  refilled.take(keys[j++ % KEYS], now += 0.001);
});

// Every key new, at the cap: the sweep hand's steps and an eviction on each take.
let n = 0;
const flood = limiter({ rate: 10, per: "1s", maxKeys: 10_000 });
Deno.bench("take: a new key each time, at maxKeys 10,000", { group: "take" }, () => {
  flood.take(`f${n++}`, now += 0.001);
});

Deno.bench("header: RateLimit value of a decision", () => {
  hot.header(hot.take("10.0.0.2", now += 0.001));
});

const gc = (globalThis as { gc?: () => void }).gc;

function heapUsed(): number {
  gc?.();
  gc?.();
  return Deno.memoryUsage().heapUsed;
}

/** Bytes per key of a limiter filled with `count` keys made by `key`, the keys included. */
function bytesPerKey(count: number, key: (i: number) => string): number {
  const before = heapUsed();
  const l = limiter({ rate: 10, per: "1m", maxKeys: count });
  for (let i = 0; i < count; i++) l.take(key(i), 0);
  const after = heapUsed();
  if (l.size !== count) throw new Error(`the limiter holds ${l.size} keys, not ${count}`);
  return (after - before) / count;
}

if (import.meta.main) {
  const note = gc ? "after gc" : "no gc: run with --v8-flags=--expose-gc for firmer figures";
  console.log(`heap per key (${note}):`);
  const ipv4 = bytesPerKey(KEYS, (i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
  console.log(`  ${KEYS} IPv4 keys: ${ipv4.toFixed(0)} B`);
  // Keys are cut to 256 characters; the cut key must not hold its 100 KB source alive.
  const big = "x".repeat(100_000);
  const huge = bytesPerKey(2_000, (i) => `${i}:${big}`);
  console.log(`  2000 keys of 100 KB, cut to 256: ${huge.toFixed(0)} B`);
}
