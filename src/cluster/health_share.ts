/**
 * Health checks shared by a cluster (issue 15): each backend is checked by one instance, its
 * owner by rendezvous hashing over the live members (ownership.ts), instead of by every
 * instance. With 50 instances and 2,000 backends that is 2,000 checks per interval instead
 * of 100,000.
 *
 * - The owner publishes each result: `SET {prefix}health:{pool}:{id} {json} PX ttl`, the
 *   results of about `FLUSH_MS` batched into one pipeline. ttl = 3 × interval + timeout.
 * - The others read the results they do not own every interval (`MGET`, `batch` keys at a
 *   time) and record each new one (a new `by`/`at` pair) through the pool's recordHealth,
 *   as one check of their own: rise and fall count remote results as they count checks.
 * - A non-owner checks a server itself while the owner's result is missing, unreadable or
 *   not renewed for a ttl (the owner died or hangs and its key expired; a new owner has had
 *   a ttl to publish), and every server while Redis is away (`redis()` undefined, or a read
 *   failed or took longer than `commandTimeout`). Those checks are not published.
 * - What Redis holds is not trusted: a value that is not a well-formed result is skipped
 *   (as if missing) and logged once per key until a good one replaces it.
 * - Ownership follows the member list: a server this instance comes to own is checked at
 *   its next tick; one it no longer owns waits (up to a ttl) for its new owner's result.
 * Outlier detection (ejection on this instance's own traffic) is not shared.
 *
 * @example
 * ```ts
 * const health = new ClusterHealth(link, { logger });
 * const pools = new Pools(configs, routes, secret, tls, { healthShare: (p) => health.forPool(p) });
 * // … on shutdown, after the pools have closed:
 * health.close();
 * ```
 */
import { z } from "zod";
import type { CheckResult, HealthFeed, HealthShare } from "../balancing/health.ts";
import type { Server } from "../balancing/server.ts";
import { hash32 } from "../balancing/strategies/_murmur3.ts";
import type { Logger } from "../log.ts";
import { bounded, errorText } from "./_redis_call.ts";
import type { ClusterLink } from "./link.ts";
import { ownershipKey, Rendezvous } from "./ownership.ts";

/** Options of a {@link ClusterHealth}. */
export interface ClusterHealthOptions {
  logger: Logger;
  /** Keys per MGET. Default 500. */
  batch?: number;
  /** Longest wait for one Redis read or publish (ms). Default 1000. */
  commandTimeout?: number;
  /** A monotonic clock (ms). Default performance.now. */
  now?: () => number;
}

/** Results published by one instance are batched for this long (ms) into one pipeline. */
export const FLUSH_MS = 50;

/** Longest `detail` kept in a published result. */
const MAX_DETAIL = 200;

const text = (max: number) =>
  // deno-lint-ignore no-control-regex
  z.string().max(max).regex(/^[^\x00-\x1f\x7f]*$/, "has a control byte");

/** A published result, as read back from Redis. */
const resultSchema = z.object({
  ok: z.boolean(),
  detail: text(MAX_DETAIL),
  /** The owner's clock (epoch ms) when it checked; with `by`, what makes a result new. */
  at: z.number().int().nonnegative(),
  by: text(200).min(1),
}).strict();

type Published = z.infer<typeof resultSchema>;

/**
 * The shared checks of one cluster member: one {@link HealthShare} per pool
 * (`forPool`, what PoolCluster.healthShare asks for), over one owner table.
 */
export class ClusterHealth {
  readonly link: ClusterLink;
  readonly logger: Logger;
  readonly batch: number;
  readonly commandTimeout: number;
  readonly now: () => number;
  #owners: Rendezvous;
  /** The member list the link gave last. */
  #seen: readonly string[];
  /** Bumped each time the member list changes, so shares recompute owners lazily. */
  #generation = 0;
  readonly #unsubscribe: () => void;
  readonly #shares = new Map<string, PoolHealthShare>();

  constructor(link: ClusterLink, opts: ClusterHealthOptions) {
    this.link = link;
    this.logger = opts.logger;
    this.batch = opts.batch ?? 500;
    this.commandTimeout = opts.commandTimeout ?? 1000;
    this.now = opts.now ?? (() => performance.now());
    this.#seen = link.members();
    this.#owners = new Rendezvous(this.#seen);
    this.#unsubscribe = link.onMembers((m) => this.#update(m));
  }

  /** The owner table now, and its generation (it changes with the member list). */
  owners(): { table: Rendezvous; generation: number } {
    // A link that changes its list without telling is still followed; the list it gave
    // last time is kept, so that asking costs one comparison while the list stays put.
    const m = this.link.members();
    if (m !== this.#seen) this.#update(m);
    return { table: this.#owners, generation: this.#generation };
  }

  /** The share of health checks for the pool named `pool`. */
  forPool(pool: string): PoolHealthShare {
    const share = new PoolHealthShare(this, pool);
    this.#shares.set(pool, share);
    return share;
  }

  /** The shares of the pools whose health loops run now, by pool name (for metrics). */
  get shares(): ReadonlyMap<string, PoolHealthShare> {
    return this.#shares;
  }

  /** A share has stopped (its pool closed). */
  forget(pool: string, share: PoolHealthShare): void {
    if (this.#shares.get(pool) === share) this.#shares.delete(pool);
  }

  /** Stops following the member list (stop the pools' health loops first). */
  close(): void {
    this.#unsubscribe();
  }

  #update(members: readonly string[]): void {
    this.#seen = members;
    if (sameMembers(members, this.#owners.members)) return;
    this.#owners = new Rendezvous(members);
    this.#generation++;
  }
}

/** Whether two member lists hold the same ids (Rendezvous keeps its list sorted). */
function sameMembers(a: readonly string[], sorted: readonly string[]): boolean {
  if (a.length !== sorted.length) return false;
  const b = [...a].sort();
  return b.every((m, i) => m === sorted[i]);
}

/** What a share knows of one server. */
interface ServerShare {
  /** Its key in Redis. */
  readonly key: string;
  /** hash32 of its ownership key. */
  readonly hash: number;
  /** The owner table generation `owner` was computed for. */
  generation: number;
  owner: string;
  /** When (this instance's clock) it got its present owner, or was first seen. */
  since: number;
  /** When a new result of its owner was last read. */
  fresh: number;
  /** `by@at` of the last result recorded, so one result counts once. */
  last: string;
  /** Its value in Redis was bad (logged), until a good one comes. */
  bad: boolean;
}

/** Counts for tests, `lb simulate`-style reports and metrics. */
export interface HealthShareStats {
  /** Checks this instance made of servers it owns. */
  ownChecks: number;
  /** Checks it made of servers it does not own (owner's result missing, or Redis away). */
  fallbackChecks: number;
  /** Ticks it skipped because another instance checks the server. */
  skipped: number;
  /** Results published. */
  published: number;
  /** Other instances' results recorded. */
  recorded: number;
  /** Values in Redis skipped as malformed. */
  bad: number;
}

/** One pool's {@link HealthShare}. */
export class PoolHealthShare implements HealthShare {
  readonly stats: HealthShareStats = {
    ownChecks: 0,
    fallbackChecks: 0,
    skipped: 0,
    published: 0,
    recorded: 0,
    bad: 0,
  };
  readonly #c: ClusterHealth;
  readonly #pool: string;
  readonly #servers = new Map<string, ServerShare>();
  #feed: HealthFeed | undefined;
  /** How long a published result lives (ms), and how long a non-owner waits for a new one. */
  #ttl = 0;
  /** Redis could not be read: check everything. */
  #away = false;
  #stopped = false;
  #readTimer: ReturnType<typeof setTimeout> | undefined;
  #reading: Promise<void> | undefined;
  #pending: [string, string][] = [];
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #flushing: Promise<void> | undefined;
  #publishFailing = false;

  constructor(c: ClusterHealth, pool: string) {
    this.#c = c;
    this.#pool = pool;
  }

  /** Whether Redis could not be read last time (every server is checked here meanwhile). */
  get away(): boolean {
    return this.#away;
  }

  /** The member that owns `s` as this instance sees it. */
  ownerOf(s: Server): string {
    return this.#state(s).owner;
  }

  start(feed: HealthFeed): void {
    this.#feed = feed;
    this.#ttl = Math.ceil(3 * feed.interval + feed.timeout);
    // Owners check within a tenth of an interval of starting; read a little after.
    this.#scheduleRead(feed.interval * 0.25);
  }

  checks(s: Server): boolean {
    const st = this.#state(s);
    const { stats } = this;
    if (st.owner === this.#c.link.self) {
      stats.ownChecks++;
      return true;
    }
    if (this.#away || this.#c.link.redis() === undefined) {
      stats.fallbackChecks++;
      return true;
    }
    if (this.#c.now() - Math.max(st.since, st.fresh) > this.#ttl) {
      stats.fallbackChecks++;
      return true;
    }
    stats.skipped++;
    return false;
  }

  publish(s: Server, r: CheckResult): void {
    if (this.#stopped) return;
    const st = this.#state(s);
    const by = this.#c.link.self;
    if (st.owner !== by) return;
    const value: Published = { ok: r.ok, detail: clean(r.detail), at: Date.now(), by };
    this.#pending.push([st.key, JSON.stringify(value)]);
    this.#flushTimer ??= setTimeout(() => this.#flush(), FLUSH_MS);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#c.forget(this.#pool, this);
    clearTimeout(this.#readTimer);
    clearTimeout(this.#flushTimer);
    this.#pending = [];
    await Promise.all([this.#reading, this.#flushing]);
  }

  #state(s: Server): ServerShare {
    const c = this.#c;
    let st = this.#servers.get(s.id);
    if (st === undefined) {
      st = {
        key: `${c.link.prefix}health:${this.#pool}:${s.id}`,
        hash: hash32(ownershipKey(this.#pool, s.id)),
        generation: -1,
        owner: "",
        since: c.now(),
        fresh: -Infinity,
        last: "",
        bad: false,
      };
      this.#servers.set(s.id, st);
    }
    const { table, generation } = c.owners();
    if (st.generation !== generation) {
      const owner = table.members[table.ownerIndex(st.hash)] ?? c.link.self;
      if (st.generation !== -1 && owner !== st.owner) st.since = c.now();
      st.owner = owner;
      st.generation = generation;
    }
    return st;
  }

  #scheduleRead(ms: number): void {
    if (this.#stopped) return;
    this.#readTimer = setTimeout(() => {
      this.#reading = this.#read().finally(() => {
        this.#reading = undefined;
        this.#scheduleRead(this.#feed!.interval);
      });
    }, ms);
  }

  /** Reads the results of every server this instance does not own, and records new ones. */
  async #read(): Promise<void> {
    const c = this.#c;
    const redis = c.link.redis();
    if (redis === undefined) return this.#setAway("Redis is unreachable");
    const todo: [Server, ServerShare][] = [];
    const live = new Set<string>();
    for (const s of this.#feed!.servers()) {
      live.add(s.id);
      const st = this.#state(s);
      if (st.owner !== c.link.self) todo.push([s, st]);
    }
    for (const id of this.#servers.keys()) if (!live.has(id)) this.#servers.delete(id);
    try {
      for (let i = 0; i < todo.length; i += c.batch) {
        const part = todo.slice(i, i + c.batch);
        const values: unknown = await bounded(
          redis.mget(part.map(([, st]) => st.key)),
          c.commandTimeout,
        );
        if (this.#stopped) return;
        if (!Array.isArray(values) || values.length !== part.length) {
          throw new Error("MGET answered with something other than one value per key");
        }
        part.forEach(([s, st], j) => this.#take(s, st, values[j]));
      }
    } catch (e) {
      return this.#setAway(`reading health results failed: ${errorText(e)}`);
    }
    this.#setAway(undefined);
  }

  /** One value read for `s`: recorded when it is a new result, logged once when it is bad. */
  #take(s: Server, st: ServerShare, raw: unknown): void {
    if (raw === null || raw === undefined) return;
    const r = parseResult(raw);
    if (typeof r === "string") {
      this.stats.bad++;
      if (!st.bad) {
        this.#c.logger.event("cluster", `skipped a bad health result at ${st.key}: ${r}`, {
          pool: this.#pool,
          server: s.id,
        });
      }
      st.bad = true;
      return;
    }
    st.bad = false;
    if (r.by === this.#c.link.self) return; // its own, from when it owned the server
    const last = `${r.by}@${r.at}`;
    if (last === st.last) return;
    st.last = last;
    st.fresh = this.#c.now();
    this.stats.recorded++;
    this.#feed!.record(s, { ok: r.ok, detail: `${r.detail} (checked by ${r.by})` });
  }

  /** Notes whether Redis could be read (`why` undefined: it could), logging each change. */
  #setAway(why: string | undefined): void {
    const away = why !== undefined;
    if (away === this.#away) return;
    this.#away = away;
    const msg = away
      ? `pool ${this.#pool}: ${why}; checking every server here until Redis is back`
      : `pool ${this.#pool}: reading health results from Redis again; checking only owned servers`;
    this.#c.logger.event("cluster", msg, { pool: this.#pool });
  }

  /** Sends the pending results in one pipeline (results pending while Redis is away are dropped). */
  #flush(): void {
    this.#flushTimer = undefined;
    if (this.#flushing !== undefined || this.#stopped) return; // its end flushes again
    const batch = this.#pending;
    this.#pending = [];
    const redis = this.#c.link.redis();
    if (redis === undefined) return this.#publishFailed("Redis is unreachable");
    const p = redis.pipeline();
    for (const [key, value] of batch) p.set(key, value, "PX", this.#ttl);
    this.#flushing = bounded(p.exec(), this.#c.commandTimeout).then((replies) => {
      const failed = replies?.find(([err]) => err);
      if (failed) throw failed[0];
      this.stats.published += batch.length;
      this.#publishFailed(undefined);
    }).catch((e) => this.#publishFailed(errorText(e))).finally(() => {
      this.#flushing = undefined;
      if (this.#pending.length > 0 && !this.#stopped) {
        this.#flushTimer ??= setTimeout(() => this.#flush(), FLUSH_MS);
      }
    });
  }

  #publishFailed(why: string | undefined): void {
    const failing = why !== undefined;
    if (failing === this.#publishFailing) return;
    this.#publishFailing = failing;
    const msg = failing
      ? `pool ${this.#pool}: publishing health results failed: ${why}`
      : `pool ${this.#pool}: publishing health results again`;
    this.#c.logger.event("cluster", msg, { pool: this.#pool });
  }
}

/** A value from Redis as a result, or why it is not one. */
function parseResult(raw: unknown): Published | string {
  if (typeof raw !== "string") return "not a string";
  if (raw.length > 1024) return `${raw.length} characters long`;
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return "not JSON";
  }
  const r = resultSchema.safeParse(json);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  return `${issue.path.join(".") || "value"}: ${issue.message}`;
}

/** A detail fit to publish: control bytes made spaces, cut to MAX_DETAIL. */
function clean(detail: string): string {
  // deno-lint-ignore no-control-regex
  return detail.replace(/[\x00-\x1f\x7f]/g, " ").slice(0, MAX_DETAIL);
}
