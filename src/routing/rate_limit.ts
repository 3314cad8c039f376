/**
 * A route's rate limit: GCRA (the generic cell rate algorithm), which behaves like a token
 * bucket of `burst` tokens refilled at `rate` per `per` but keeps one number per key, the
 * key's theoretical arrival time (TAT). A request is allowed when, after it, the TAT lies at
 * most `burst` emission intervals ahead of now.
 *
 * Time is counted in ticks of 1/`rate` ms from an origin the limiter moves forward. One
 * emission interval (`per`/`rate` ms) is then `per` ticks and the burst tolerance is
 * `burst`·`per` ticks: whole numbers whenever `per` is whole, so `3 per 1s` allows exactly 3
 * at once with no rounding slack to argue about.
 *
 * Memory is bounded by `maxKeys`. A key whose TAT has passed is the same as a key never seen,
 * so it can be dropped at any time; a sweep hand drops such keys as new ones arrive, a full
 * sweep runs at most every `sweepEveryMs` (lazily, inside `take`: no timers), and at the cap
 * the oldest-inserted key is evicted. Eviction fails open: that key starts again with a full
 * bucket, which can make a limit more lenient but never stricter.
 */
import type { RateLimitConfig } from "../config/routes.ts";

/** The outcome of one request against a limit. */
export interface RateDecision {
  allowed: boolean;
  /** Whole tokens left after this request (0 when refused). */
  remaining: number;
  /** Seconds until the bucket is full again (ceil, ≥ 0): the `t` of the RateLimit header. */
  resetSeconds: number;
  /** When refused: whole seconds until one request would be allowed (ceil, ≥ 1); 0 when allowed. */
  retryAfterSeconds: number;
}

/**
 * A route's limit kept with the other instances of a cluster (`rateLimit.shared`,
 * cluster/shared_rate_limit.ts). `take` answers at once when it can (Redis away: the local
 * bucket decides), else later; it never rejects.
 */
export interface SharedLimit {
  take(key: string, now: number): RateDecision | Promise<RateDecision>;
  close(): void;
}

/** Options of a {@link RateLimiter}. */
export interface RateLimiterOptions {
  /** Least time (ms, the `now` of `take`) between two full sweeps of expired keys. Default 10 s. */
  sweepEveryMs?: number;
}

/**
 * Keys are cut to this many UTF-16 units. Truncation, not hashing: it costs nothing for
 * ordinary keys, and keys that share their first 256 units on purpose share one bucket,
 * which hurts only whoever chose them (knowing a victim's first 256 units of a secret key
 * means being able to send the whole key anyway).
 */
export const MAX_KEY_LENGTH = 256;

/** Default least time between two full sweeps (ms). */
export const DEFAULT_SWEEP_EVERY_MS = 10_000;

/**
 * Keys the sweep hand looks at for each new key. More than one, so the hand goes round
 * faster than keys arrive and a flood of short-lived keys is swept, not evicted.
 */
const SWEEP_STEP = 2;

/** Slots of the first TAT array; it doubles up to maxKeys. */
const FIRST_SLOTS = 1024;

/**
 * One route's limiter: one GCRA bucket per key.
 *
 * For a key it holds, `take` allocates only the decision it returns (a new object each
 * call, so a caller may keep it across awaits): TATs live in a Float64Array indexed by a slot
 * the Map holds, so a known key costs one Map lookup, no write to the Map and no boxed
 * number (a Map<string, number> of TATs took 21 ns a get+set against 5 ns this way). A new
 * key also costs its Map entry and the sweep hand's steps.
 */
export class RateLimiter {
  /** `RateLimit-Policy` value (draft-ietf-httpapi-ratelimit-headers-10): `"name";q=burst;w=s`. */
  readonly policyHeader: string;
  readonly #name: string;
  /** Ticks per ms: `rate`, so that one interval is `per` ticks. */
  readonly #ticksPerMs: number;
  /** One emission interval, in ticks. */
  readonly #interval: number;
  /** How far ahead of now a TAT may be after an allowed request (burst intervals), in ticks. */
  readonly #tolerance: number;
  readonly #ticksPerSecond: number;
  readonly #maxKeys: number;
  readonly #sweepEveryMs: number;
  #slots = new Map<string, number>();
  /** TAT of each slot, in ticks since #origin. */
  #tats = new Float64Array(0);
  #free: number[] = [];
  /** Slots handed out so far; slots below it are in #slots or #free. */
  #used = 0;
  #hand: Iterator<[string, number]> | undefined;
  #oldest: Iterator<[string, number]> | undefined;
  /** The ms (caller's clock) of tick 0. */
  #origin = 0;
  #sweptAt = -Infinity;

  /** A limiter for `config`, naming itself `policyName` in its headers. */
  constructor(config: RateLimitConfig, policyName: string, opts: RateLimiterOptions = {}) {
    checkConfig(config);
    if (!(opts.sweepEveryMs === undefined || opts.sweepEveryMs >= 0)) {
      throw new RangeError(`sweepEveryMs must be ≥ 0, not ${opts.sweepEveryMs}`);
    }
    this.#name = sfString(policyName);
    this.#ticksPerMs = config.rate;
    this.#interval = config.per;
    this.#tolerance = config.burst * config.per;
    this.#ticksPerSecond = 1000 * config.rate;
    this.#maxKeys = config.maxKeys;
    this.#sweepEveryMs = opts.sweepEveryMs ?? DEFAULT_SWEEP_EVERY_MS;
    const window = Math.max(1, Math.ceil(this.#tolerance / this.#ticksPerSecond));
    this.policyHeader = `${this.#name};q=${config.burst};w=${window}`;
    this.#reset(0);
  }

  /** Buckets held now (tests and metrics). */
  get size(): number {
    return this.#slots.size;
  }

  /**
   * Takes one token for `key` at `now` (ms). `now` must not go backwards: use
   * performance.now() (Date.now() jumps with the wall clock, and a jump back would hold every
   * key's TAT in the future for as long as the jump). A refused request takes nothing. Keys
   * longer than {@link MAX_KEY_LENGTH} are cut to it.
   */
  take(key: string, now: number): RateDecision {
    if (now - this.#sweptAt >= this.#sweepEveryMs) this.#sweepAll(now);
    if (key.length > MAX_KEY_LENGTH) key = key.slice(0, MAX_KEY_LENGTH);
    // Rounded down so TATs stay whole: a fractional `now` (performance.now()) counts as at
    // most one tick, 1/rate ms, earlier than it is.
    const t = Math.floor((now - this.#origin) * this.#ticksPerMs);
    const slot = this.#slots.get(key);
    const tat = slot === undefined ? t : this.#tats[slot];
    const owed = tat > t ? tat - t : 0;
    // Ticks from now to the TAT this request would leave behind.
    const wait = owed + this.#interval;
    if (wait > this.#tolerance) {
      return {
        allowed: false,
        remaining: 0,
        resetSeconds: Math.ceil(owed / this.#ticksPerSecond),
        retryAfterSeconds: Math.max(
          1,
          Math.ceil((wait - this.#tolerance) / this.#ticksPerSecond),
        ),
      };
    }
    if (slot === undefined) this.#insert(key, t + wait, t);
    else this.#tats[slot] = t + wait;
    return {
      allowed: true,
      remaining: Math.floor((this.#tolerance - wait) / this.#interval),
      resetSeconds: Math.ceil(wait / this.#ticksPerSecond),
      retryAfterSeconds: 0,
    };
  }

  /** `RateLimit` value for a decision: `"name";r=remaining;t=resetSeconds`. */
  header(d: RateDecision): string {
    return `${this.#name};r=${d.remaining};t=${d.resetSeconds}`;
  }

  /** Drops every bucket. There is no timer to stop; a later `take` starts afresh. */
  close(): void {
    this.#reset(0);
    this.#sweptAt = -Infinity;
  }

  /** A new key: sweep a little, make room if at the cap, then store its TAT. */
  #insert(key: string, tat: number, t: number): void {
    this.#sweepSome(t);
    if (this.#slots.size >= this.#maxKeys) this.#evictOldest();
    const slot = this.#free.length > 0 ? this.#free.pop()! : this.#newSlot();
    this.#tats[slot] = tat;
    this.#slots.set(key, slot);
  }

  #newSlot(): number {
    if (this.#used === this.#tats.length) {
      const grown = new Float64Array(Math.min(this.#maxKeys, this.#tats.length * 2));
      grown.set(this.#tats);
      this.#tats = grown;
    }
    return this.#used++;
  }

  /**
   * Moves the sweep hand SWEEP_STEP keys on, dropping expired ones. Map iterators survive
   * deletes and see keys added after them, so the hand goes round the whole Map, hot keys
   * included, instead of stopping at the first live key like a look at the oldest would.
   */
  #sweepSome(t: number): void {
    for (let i = 0; i < SWEEP_STEP; i++) {
      let step = this.#hand?.next();
      if (step === undefined || step.done) {
        this.#hand = this.#slots.entries();
        step = this.#hand.next();
        if (step.done) return;
      }
      const [key, slot] = step.value;
      if (this.#tats[slot] <= t) this.#drop(key, slot);
    }
  }

  /**
   * Evicts the oldest-inserted key. The iterator is kept between calls: a new one would
   * start at the Map's first slot and step over every key deleted since the table was last
   * compacted: a flood of 1,000,000 new keys at a cap of 10,000 took 8 µs a key that way,
   * 0.5 µs this way.
   * Every key it has passed has been deleted, so it always stands on the oldest.
   */
  #evictOldest(): void {
    let step = this.#oldest?.next();
    if (step === undefined || step.done) {
      this.#oldest = this.#slots.entries();
      step = this.#oldest.next();
    }
    const [key, slot] = step.value!;
    this.#drop(key, slot);
  }

  #drop(key: string, slot: number): void {
    this.#slots.delete(key);
    this.#free.push(slot);
  }

  /**
   * Drops every expired key, and moves the origin to about `now` so tick counts stay far
   * below 2^53 (exact) however long lb runs: ticks since the origin are at most
   * sweepEveryMs·rate plus the tolerance, unless `take` is not called for a long time, and
   * then this sweep runs before any tick is counted.
   */
  #sweepAll(now: number): void {
    this.#sweptAt = now;
    const t = Math.floor((now - this.#origin) * this.#ticksPerMs);
    const shiftMs = Math.floor(now - this.#origin);
    // Whole ms, so the shift in ticks is a whole number and live TATs stay exact.
    const shift = shiftMs * this.#ticksPerMs;
    for (const [key, slot] of this.#slots) {
      if (this.#tats[slot] <= t) this.#drop(key, slot);
      else this.#tats[slot] -= shift;
    }
    if (this.#slots.size === 0) this.#reset(now);
    else this.#origin += shiftMs;
  }

  /** Empty: gives back the memory a flood of keys made the TAT array and free list grow to. */
  #reset(origin: number): void {
    this.#slots = new Map();
    this.#tats = new Float64Array(Math.min(this.#maxKeys, FIRST_SLOTS));
    this.#free = [];
    this.#used = 0;
    this.#hand = undefined;
    this.#oldest = undefined;
    this.#origin = origin;
  }
}

/** Throws a RangeError naming the field that a limiter cannot work with. */
function checkConfig(c: RateLimitConfig): void {
  const positive = (n: number) => Number.isFinite(n) && n > 0;
  if (!positive(c.rate)) throw new RangeError(`rate must be a number > 0, not ${c.rate}`);
  if (!positive(c.per)) throw new RangeError(`per must be a duration > 0 ms, not ${c.per}`);
  // Below one request, no request could ever be allowed.
  if (!(Number.isFinite(c.burst) && c.burst >= 1)) {
    throw new RangeError(`burst must be a number ≥ 1, not ${c.burst}`);
  }
  if (!Number.isInteger(c.maxKeys) || c.maxKeys < 1) {
    throw new RangeError(`maxKeys must be a whole number ≥ 1, not ${c.maxKeys}`);
  }
}

/** `s` as a Structured Field String (RFC 9651 §3.3.3): quoted, `\` and `"` escaped. */
function sfString(s: string): string {
  if (!/^[\x20-\x7e]*$/.test(s)) {
    throw new RangeError(`policy name ${JSON.stringify(s)} must be printable ASCII`);
  }
  return `"${s.replace(/[\\"]/g, "\\$&")}"`;
}
