/**
 * Rate limits shared by a cluster (`rateLimit.shared: true`, issue 15): a route's GCRA
 * buckets live in Redis, so every instance draws on one budget per key. Each request is one
 * EVALSHA of a Lua script that reads the key's TAT (theoretical arrival time), decides and
 * writes the new TAT with a PX expiry (the time until the bucket is full again, after which
 * the key is the same as absent), atomically, on Redis's clock (`TIME`), so instances'
 * clocks do not matter. Times are whole microseconds: one emission interval is
 * `per`·1000/`rate` µs and TATs are stored rounded down, which can only make the limit a
 * microsecond per request more lenient, never stricter.
 *
 * Fail open: while Redis is away (`redis()` undefined), the request is decided at once, with
 * no await, by the route's local bucket (the limit as one instance would apply it); when
 * Redis fails, answers something malformed or takes longer than `timeoutMs` (default 50),
 * the local bucket decides too. Each fallback is counted by route and reason
 * ({@link FallbackReason}) for `lb_rate_limit_fallbacks_total` (admin/metrics_cluster.ts). A
 * request is never refused, and never answered 500, because Redis is in trouble. (While
 * Redis works the local bucket is not touched, so on a fallback each key starts with a full
 * local bucket: more lenient, as failing open means.)
 *
 * Keys: `{prefix}rl:{route}:{key}` with the request's key cut to MAX_KEY_LENGTH, as locally.
 * Redis holds a key at most until its bucket is full again, so its memory follows the keys
 * active within one burst window; `maxKeys` bounds only the local fallback.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { RateLimitConfig } from "../config/routes.ts";
import {
  MAX_KEY_LENGTH,
  type RateDecision,
  type RateLimiter,
  type SharedLimit,
} from "../routing/rate_limit.ts";
import { bounded, RedisTimeout } from "./_redis_call.ts";
import type { ClusterLink } from "./link.ts";

/** Why a request was decided by the local bucket instead of Redis. */
export type FallbackReason = "unreachable" | "timeout" | "error" | "bad_reply";

/** Options of {@link SharedRateLimits}. */
export interface SharedRateLimitOptions {
  /** Longest wait for Redis per request (ms) before the local bucket decides. Default 50. */
  timeoutMs?: number;
  /** A monotonic clock (ms) for late fallbacks. Default performance.now. */
  now?: () => number;
}

/**
 * GCRA in Redis. KEYS[1]: the bucket's TAT key; ARGV: emission interval and tolerance
 * (burst × interval), in µs. Returns {allowed (0/1), µs the key owed before this request}.
 * A TAT that is not a number or lies beyond the tolerance (no allowed request leaves one
 * there) counts as absent.
 */
export const GCRA_SCRIPT = `
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now or tat > now + tolerance then tat = now end
local owed = tat - now
if owed + interval > tolerance then return {0, owed} end
local new = math.floor(tat + interval)
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return {1, owed}
`;

const GCRA_SHA = createHash("sha1").update(GCRA_SCRIPT).digest("hex");

/** One EVALSHA; the script is sent once per Redis (NOSCRIPT: EVAL loads it). */
async function gcra(redis: Redis, key: string, interval: string, tolerance: string) {
  try {
    return await redis.evalsha(GCRA_SHA, 1, key, interval, tolerance);
  } catch (e) {
    if (!(e instanceof Error && e.message.startsWith("NOSCRIPT"))) throw e;
    return await redis.eval(GCRA_SCRIPT, 1, key, interval, tolerance);
  }
}

/** The shared limits of one cluster member: `limit` is what PoolsCluster.sharedLimit asks. */
export class SharedRateLimits {
  readonly link: ClusterLink;
  readonly timeoutMs: number;
  readonly now: () => number;
  /** Fallbacks by route, then reason. */
  readonly #fallbacks = new Map<string, Map<FallbackReason, number>>();

  constructor(link: ClusterLink, opts: SharedRateLimitOptions = {}) {
    this.link = link;
    this.timeoutMs = opts.timeoutMs ?? 50;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Route `route`'s limit `config`, kept in Redis, falling back to `local`. */
  limit(config: RateLimitConfig, route: string, local: RateLimiter): SharedLimit {
    return new SharedRateLimit(this, config, route, local);
  }

  /** Every fallback so far, by route and reason (counters: they only grow). */
  fallbacks(): { route: string; reason: FallbackReason; count: number }[] {
    const out: { route: string; reason: FallbackReason; count: number }[] = [];
    for (const [route, reasons] of this.#fallbacks) {
      for (const [reason, count] of reasons) out.push({ route, reason, count });
    }
    return out;
  }

  /** Counts one fallback. */
  fellBack(route: string, reason: FallbackReason): void {
    let reasons = this.#fallbacks.get(route);
    if (reasons === undefined) this.#fallbacks.set(route, reasons = new Map());
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
}

/** One route's shared limit. */
class SharedRateLimit implements SharedLimit {
  readonly #limits: SharedRateLimits;
  readonly #route: string;
  readonly #local: RateLimiter;
  readonly #keyPrefix: string;
  /** Emission interval and tolerance in µs, as numbers and as the script's arguments. */
  readonly #interval: number;
  readonly #tolerance: number;
  readonly #args: [string, string];

  constructor(limits: SharedRateLimits, c: RateLimitConfig, route: string, local: RateLimiter) {
    this.#limits = limits;
    this.#route = route;
    this.#local = local;
    this.#keyPrefix = `${limits.link.prefix}rl:${route}:`;
    this.#interval = c.per * 1000 / c.rate;
    this.#tolerance = c.burst * this.#interval;
    this.#args = [String(this.#interval), String(this.#tolerance)];
  }

  take(key: string, now: number): RateDecision | Promise<RateDecision> {
    const redis = this.#limits.link.redis();
    if (redis === undefined) return this.#fallback(key, now, "unreachable");
    if (key.length > MAX_KEY_LENGTH) key = key.slice(0, MAX_KEY_LENGTH);
    return this.#remote(redis, key);
  }

  /** Nothing to stop: the keys in Redis expire by themselves. */
  close(): void {}

  async #remote(redis: Redis, key: string): Promise<RateDecision> {
    const [interval, tolerance] = this.#args;
    let reply: unknown;
    try {
      reply = await bounded(
        gcra(redis, this.#keyPrefix + key, interval, tolerance),
        this.#limits.timeoutMs,
      );
    } catch (e) {
      const reason = e instanceof RedisTimeout ? "timeout" : "error";
      return this.#fallback(key, this.#limits.now(), reason);
    }
    return this.#decision(reply) ?? this.#fallback(key, this.#limits.now(), "bad_reply");
  }

  /** The script's reply as a decision, as RateLimiter.take makes them; undefined when malformed. */
  #decision(reply: unknown): RateDecision | undefined {
    if (!Array.isArray(reply) || reply.length !== 2) return undefined;
    const [allowed, owed] = reply;
    if ((allowed !== 0 && allowed !== 1) || typeof owed !== "number") return undefined;
    if (!(owed >= 0 && owed <= this.#tolerance)) return undefined;
    const wait = owed + this.#interval;
    if (allowed === 0) {
      return {
        allowed: false,
        remaining: 0,
        resetSeconds: Math.ceil(owed / 1e6),
        retryAfterSeconds: Math.max(1, Math.ceil((wait - this.#tolerance) / 1e6)),
      };
    }
    return {
      allowed: true,
      remaining: Math.max(0, Math.floor((this.#tolerance - wait) / this.#interval)),
      resetSeconds: Math.ceil(wait / 1e6),
      retryAfterSeconds: 0,
    };
  }

  #fallback(key: string, now: number, reason: FallbackReason): RateDecision {
    this.#limits.fellBack(this.#route, reason);
    return this.#local.take(key, now);
  }
}
