/**
 * `cluster.redis`: this instance's part in a cluster of lbs that share one view (servers,
 * weights, admin states, strategy switches, the sticky secret) through Redis.
 *
 * - **Changes**: an admin change is applied here, then written to Redis by one script
 *   (redis_view.ts: fields, revision and stream entry at once) before the API answers; if
 *   Redis does not take it, it is undone here and the API answers 503.
 * - **Following**: a second connection reads the change stream with XREAD BLOCK and applies
 *   each revision in order; a gap (missed entries, a new epoch) makes it read the whole view
 *   again. At start and on every reconnect the whole view is read (HGETALL); an empty Redis
 *   is seeded with this instance's view (config file + state file): the first instance to
 *   reach it wins, the others adopt its view.
 * - **Redis is not in the request path**: requests never wait for it. While it is away the
 *   instance serves with the last view it had (also kept in its state file, so a restart
 *   without Redis starts from it), refuses admin changes with 503, says `degraded` on
 *   /healthz, and logs and counts it; when Redis returns it resyncs.
 * - **Members**: a heartbeat key per instance (members.ts).
 *
 * Applying a view goes through the same reload path as the state file (reload.ts reads
 * `overlayFor` instead of the file), so a cluster change does exactly what the same change
 * through this instance's own API would.
 */
import { hostname } from "node:os";
import type { Redis, RedisOptions } from "ioredis";
import type { ClusterConfig } from "../config/cluster.ts";
import type { Config } from "../config/schema.ts";
import type { StateOverlay } from "../control/state_file.ts";
import type { Logger } from "../log.ts";
import type { ClusterLink } from "./link.ts";
import { type MemberInfo, Members } from "./members.ts";
import {
  diffViews,
  overlayOfView,
  parseEntry,
  put,
  valueOf,
  type View,
  type ViewEntry,
  viewOfOverlay,
} from "./records.ts";
import { type Change, RedisView } from "./redis_view.ts";

/** What the cluster needs from the lb it belongs to. */
export interface ClusterHost {
  logger: Logger;
  /** The config as loaded (what the view is a difference from). */
  config(): Config;
  /** What runs now, as a state file overlay. */
  running(): StateOverlay;
  /** Makes the running lb match the view (a reload that reads `overlayFor`). */
  apply(why: string): Promise<void>;
  /** What this instance says about itself in its member key (besides its URL). */
  info(): Promise<{ version: string; startedAt: number; requests: number }>;
}

/** Redis cannot take a change now: the API answers 503 with this message. */
export class ClusterUnavailable extends Error {}

/** How long one command may take before it counts as failed (XREAD waits longer). */
const COMMAND_TIMEOUT_MS = 1000;
/**
 * A change's script refuses to run this long after it was sent (by Redis's clock), so a
 * write that timed out here, and was undone, cannot land late: the rest of the command
 * timeout is left for the answer's way back.
 */
const WRITE_DEADLINE_MS = 800;
const FOLLOW_BLOCK_MS = 2000;

export interface ClusterStatus {
  name: string;
  self: string;
  /** Connected and following the view. */
  connected: boolean;
  revision: number;
  epoch?: string;
  /** When the connection state last changed (epoch ms). */
  since: number;
  lastError?: string;
  members: readonly MemberInfo[];
}

export class Cluster implements ClusterLink {
  readonly prefix: string;
  readonly self: string;
  readonly store: RedisView;
  readonly #host: ClusterHost;
  readonly #config: ClusterConfig;
  readonly #url: string;
  /** The command connection and the one that waits in XREAD; made by start(). */
  #cmd: Redis | undefined;
  #follower: Redis | undefined;
  #opening: Promise<void> = Promise.resolve();
  /** The traffic listener's URL, for the member list (given to start()). */
  #trafficUrl: () => string = () => "";
  readonly #roster: Members;
  #view: View = new Map();
  #epoch: string | undefined;
  #rev = 0;
  #streamId = "0";
  /** This instance's own writes not yet seen in the stream: field → revision and entry. */
  #pending = new Map<string, { rev: number; entry?: ViewEntry }>();
  #synced = false;
  #hasView = false;
  #closed = false;
  #since = Date.now();
  #lastError: string | undefined;
  #chain: Promise<void> = Promise.resolve();
  #beat: ReturnType<typeof setInterval> | undefined;
  #lastBeat = { at: Date.now(), requests: 0 };
  /** Redis's clock minus this machine's, from the last heartbeat. */
  #clockOffset = 0;
  #listeners = new Set<(members: readonly string[]) => void>();
  #following: Promise<void> = Promise.resolve();
  /** Problems with values in Redis already logged (each is logged once). */
  #skipped = new Set<string>();
  /** Counters for the metrics: views applied, Redis errors. */
  readonly counts = { applied: 0, errors: 0, refused: 0 };

  constructor(config: ClusterConfig, url: string, host: ClusterHost) {
    this.#config = config;
    this.#host = host;
    this.prefix = `lb:{${config.name}}:`;
    this.self = config.instance ?? `${hostname()}-${Deno.pid}`;
    this.store = new RedisView(this.prefix);
    this.#roster = new Members(this.prefix, this.self, config.memberTtl);
    this.#url = url;
  }

  /**
   * Makes both connections and starts connecting. ioredis is loaded here, not at lb's start:
   * it and the Node compatibility layer it pulls in cost about 25 MB, which an lb without a
   * cluster should not pay.
   */
  async #open(): Promise<void> {
    const { Redis } = await import("ioredis");
    if (this.#closed) return;
    const options: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (n) => Math.min(100 * 2 ** n, 2000),
    };
    const cmd = this.#cmd = new Redis(this.#url, options);
    const follower = this.#follower = new Redis(this.#url, {
      ...options,
      commandTimeout: FOLLOW_BLOCK_MS + COMMAND_TIMEOUT_MS,
    });
    cmd.on("error", (e: Error) => this.#lastError = e.message);
    follower.on("error", () => {});
    cmd.on("ready", () => this.#resync("connected to Redis"));
    cmd.on("close", () => this.#down());
    cmd.connect().catch(() => {}); // retried by ioredis; #down logs it
    follower.connect().catch(() => {});
  }

  /**
   * Connects (in the background: lb serves at once with its state file's view); `url` is the
   * traffic listener's, for the member list.
   */
  start(url: () => string): void {
    this.#trafficUrl = url;
    this.#opening = this.#open().catch((e) => void (this.#lastError = (e as Error).message));
    this.#following = this.#follow();
    this.#beat = setInterval(() => void this.#heartbeat(), this.#config.heartbeat);
  }

  redis(): Redis | undefined {
    return this.#cmd?.status === "ready" ? this.#cmd : undefined;
  }

  members(): readonly string[] {
    if (!this.#synced) return [this.self];
    const ids = this.#roster.list.map((m) => m.id);
    return ids.includes(this.self) ? ids : [...ids, this.self].sort();
  }

  onMembers(fn: (members: readonly string[]) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  status(): ClusterStatus {
    return {
      name: this.#config.name,
      self: this.self,
      connected: this.#synced,
      revision: this.#rev,
      epoch: this.#epoch,
      since: this.#since,
      ...(this.#lastError && { lastError: this.#lastError }),
      members: this.#synced ? this.#roster.list : [],
    };
  }

  /**
   * The overlay the view amounts to over `config` (what a reload applies), or undefined
   * before the first sync (lb then runs with its state file).
   */
  overlayFor(config: Config): StateOverlay | undefined {
    return this.#hasView ? overlayOfView(config, this.#effective()) : undefined;
  }

  /**
   * Before an admin change: throws ClusterUnavailable while Redis is away; otherwise the
   * view of what runs now, for `publish` to tell what the change touched.
   */
  begin(): View {
    if (!this.#synced || !this.redis()) {
      this.counts.refused++;
      throw new ClusterUnavailable(
        `the cluster's Redis is unreachable (${this.#lastError ?? "not connected"}): changes ` +
          `are refused until it returns; lb keeps serving with view revision ${this.#rev}`,
      );
    }
    return viewOfOverlay(this.#host.config(), this.#host.running());
  }

  /**
   * After an admin change was applied here: writes what it touched (the difference between
   * `before` and what runs now) to Redis. When Redis does not take it, the change is undone
   * here and ClusterUnavailable is thrown.
   */
  async publish(before: View): Promise<void> {
    const config = this.#host.config();
    const after = viewOfOverlay(config, this.#host.running());
    const writes = diffViews(config, before, after);
    if (!writes.length) return;
    // Pending until Redis answers, so a view applied meanwhile does not undo the change here.
    const mine = { rev: Infinity };
    for (const [field] of writes) this.#pending.set(field, { ...mine, entry: after.get(field) });
    let r: { epoch: string; rev: number } | undefined;
    let why = "Redis holds no view";
    try {
      const redis = this.redis();
      if (!redis) throw new Error("not connected");
      const deadline = Date.now() + this.#clockOffset + WRITE_DEADLINE_MS;
      const answer = await this.store.write(redis, writes, deadline);
      if (answer === "late") throw new Error(`Redis ran it more than ${WRITE_DEADLINE_MS}ms late`);
      r = answer;
    } catch (e) {
      why = (e as Error).message;
      this.counts.errors++;
    }
    for (const [field] of writes) {
      if (this.#pending.get(field)?.rev !== Infinity) continue; // a later write of the field
      if (r) this.#pending.set(field, { rev: r.rev, entry: after.get(field) });
      else this.#pending.delete(field);
    }
    if (r && r.epoch === this.#epoch) return;
    this.#resync(`a write found ${r ? "a new view" : why}`);
    if (r) return; // taken by a view seeded since: the resync brings it back
    await this.#host.apply(`undo: Redis did not take the change (${why})`);
    throw new ClusterUnavailable(`Redis did not take the change (${why}); it was undone here`);
  }

  /** Leaves the member list, stops following and closes both connections. */
  async stop(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#beat);
    await this.#opening;
    const redis = this.redis();
    if (redis) await this.#roster.leave(redis).catch(() => {});
    this.#cmd?.disconnect();
    this.#follower?.disconnect();
    await this.#following;
    await this.#chain;
  }

  /** The view with this instance's own writes that the stream has not brought back yet. */
  #effective(): View {
    if (this.#pending.size === 0) return this.#view;
    const out = new Map(this.#view);
    for (const [field, p] of this.#pending) {
      if (p.rev <= this.#rev) continue;
      if (p.entry) out.set(field, p.entry);
      else out.delete(field);
    }
    return out;
  }

  /** Runs `fn` after everything queued before it (syncs and applies never overlap). */
  #queue(fn: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(fn).catch((e) => {
      this.counts.errors++;
      this.#lastError = (e as Error).message;
    });
    this.#chain = next;
    return next;
  }

  #down(): void {
    if (this.#closed || !this.#synced) return;
    this.#synced = false;
    this.#since = Date.now();
    this.#host.logger.event(
      "cluster",
      `lost Redis (${this.#lastError ?? "connection closed"}): serving with view revision ` +
        `${this.#rev}; admin changes are refused until it returns`,
      { connected: false, revision: this.#rev },
    );
    this.#emitMembers();
  }

  /** Reads the whole view (seeding an empty Redis) and applies it. */
  #resync(why: string): void {
    void this.#queue(async () => {
      const redis = this.redis();
      if (!redis || this.#closed) return;
      let snap = await this.store.snapshot(redis);
      let seeded = false;
      if (!snap.epoch) {
        const mine = viewOfOverlay(this.#host.config(), this.#host.running());
        const fields = [...mine].map(([f, e]): [string, string] => [f, valueOf(e)]);
        seeded = await this.store.seed(redis, crypto.randomUUID(), fields);
        snap = await this.store.snapshot(redis);
      }
      if (!snap.epoch) throw new Error("Redis lost the view while it was being seeded");
      this.#adopt(snap.epoch, snap.rev, snap.fields, snap.streamId);
      const wasSynced = this.#synced;
      this.#synced = true;
      if (!wasSynced) this.#since = Date.now();
      const how = seeded ? "seeded it with this instance's view" : "adopted its view";
      await this.#applyIfDifferent(`cluster view revision ${snap.rev}`);
      this.#host.logger.event(
        "cluster",
        `${why}: ${how} (revision ${snap.rev}, ${snap.fields.size} entries)`,
        { connected: true, revision: snap.rev, seeded },
      );
      await this.#heartbeat();
    });
  }

  #adopt(epoch: string, rev: number, fields: Map<string, string>, streamId: string): void {
    const view: View = new Map();
    for (const [field, raw] of fields) {
      const e = parseEntry(field, raw);
      if ("problem" in e) this.#skip(e.problem);
      else put(view, e);
    }
    if (epoch !== this.#epoch) this.#pending.clear();
    this.#view = view;
    this.#epoch = epoch;
    this.#rev = rev;
    this.#streamId = streamId;
    this.#hasView = true;
    for (const [field, p] of this.#pending) if (p.rev <= rev) this.#pending.delete(field);
  }

  /** A value in Redis that lb would not write: logged once, then ignored. */
  #skip(problem: string): void {
    this.counts.errors++;
    if (this.#skipped.has(problem)) return;
    if (this.#skipped.size > 1000) this.#skipped.clear();
    this.#skipped.add(problem);
    this.#host.logger.error(`cluster: skipped a value in Redis: ${problem}`, { kind: "cluster" });
  }

  /** Applies the view when what runs differs from it. */
  async #applyIfDifferent(why: string): Promise<void> {
    const config = this.#host.config();
    const running = viewOfOverlay(config, this.#host.running());
    if (diffViews(config, this.#effective(), running).length === 0) return;
    this.counts.applied++;
    await this.#host.apply(why);
  }

  /** Follows the change stream until stopped. */
  async #follow(): Promise<void> {
    while (!this.#closed) {
      const follower = this.#follower;
      if (!this.#synced || follower?.status !== "ready") {
        await delay(100);
        continue;
      }
      let changes: Change[];
      try {
        changes = await this.store.follow(follower, this.#streamId, FOLLOW_BLOCK_MS);
      } catch {
        if (!this.#closed) await delay(200);
        continue;
      }
      if (changes.length) await this.#queue(() => this.#take(changes));
    }
  }

  /** Applies stream entries in revision order; a gap or a new epoch means a resync. */
  async #take(changes: Change[]): Promise<void> {
    let taken = 0;
    for (const c of changes) {
      if (c.epoch !== this.#epoch || c.rev > this.#rev + 1 || Number.isNaN(c.rev)) {
        this.#resync(`revision ${c.rev} follows ${this.#rev}`);
        return;
      }
      this.#streamId = c.id;
      if (c.rev <= this.#rev) continue;
      for (const [field, raw] of c.fields) {
        if (raw === "") {
          this.#view.delete(field);
          continue;
        }
        const e = parseEntry(field, raw);
        if ("problem" in e) this.#skip(e.problem);
        else put(this.#view, e);
      }
      this.#rev = c.rev;
      taken++;
    }
    for (const [field, p] of this.#pending) if (p.rev <= this.#rev) this.#pending.delete(field);
    if (taken) await this.#applyIfDifferent(`cluster view revision ${this.#rev}`);
  }

  /** Renews the member key, refreshes the member list, and notices an emptied Redis. */
  async #heartbeat(): Promise<void> {
    const redis = this.redis();
    if (!redis || !this.#synced || this.#closed) return;
    const info = { ...await this.#host.info(), url: this.#trafficUrl() };
    const now = Date.now();
    const seconds = Math.max((now - this.#lastBeat.at) / 1000, 0.001);
    const rate = Math.max(0, (info.requests - this.#lastBeat.requests) / seconds);
    this.#lastBeat = { at: now, requests: info.requests };
    try {
      const changed = await this.#roster.beat(redis, {
        id: this.self,
        host: hostname(),
        pid: Deno.pid,
        ...info,
        requestRate: Math.round(rate * 10) / 10,
        revision: this.#rev,
      });
      if (changed) this.#emitMembers();
      this.#clockOffset = await this.store.clockOffset(redis);
      const epoch = await redis.hget(this.store.viewKey, "#epoch");
      if (epoch !== this.#epoch) this.#resync("the view in Redis was replaced");
    } catch (e) {
      this.counts.errors++;
      this.#lastError = (e as Error).message;
    }
  }

  #emitMembers(): void {
    const ids = this.members();
    for (const fn of this.#listeners) fn(ids);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
