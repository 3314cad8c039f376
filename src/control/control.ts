/**
 * Control: the one door for the operator's changes to a running lb. A change from the admin
 * API goes through a method here, so it is logged once (with who asked), persisted to the
 * state file before it is acknowledged, and announced to the dashboard. A reload makes the
 * pools match a config through reconcile.ts, in this same room, with the control's drains,
 * and logs its changes as one event (they come from lb.yaml, so the state file is not
 * written). Nothing outside src/control/ changes membership, weights, caps or admin states.
 */
import { stateOf } from "../balancing/availability.ts";
import { DuplicateServerError } from "../balancing/pool.ts";
import type { Server } from "../balancing/server.ts";
import { type AdminState, type BackendInput, checkWeight } from "../config/backend.ts";
import { type PoolConfig, resolvePools } from "../config/pools.ts";
import type { Config } from "../config/schema.ts";
import type { HashOptions } from "../config/strategy.ts";
import type { Logger } from "../log.ts";
import type { View } from "../cluster/records.ts";
import { initiallyHealthy, type PoolRuntime } from "../routing/pool_runtime.ts";
import type { Pools } from "../routing/pools.ts";
import { Drains } from "./drains.ts";
import { diffOverlay } from "./overlay.ts";
import { type StateOverlay, writeStateFile } from "./state_file.ts";

/**
 * A change that cannot be made: `status` says which HTTP answer fits (400, 404, 409; 503
 * when the cluster's Redis cannot take it).
 */
export class ControlError extends Error {
  constructor(readonly status: 400 | 404 | 409 | 503, message: string, readonly field?: string) {
    super(message);
  }
}

/**
 * The admin states the state file kept, set on a pool that takes no traffic yet (so nothing
 * is logged): at start, for a pool a reload adds, and for `lb route --offline`, which must
 * see the pools as a start would build them.
 */
export function restoreAdminStates(
  pool: PoolRuntime,
  adminStates: ReadonlyMap<string, AdminState>,
): void {
  for (const [id, state] of adminStates) {
    const s = pool.servers.get(id);
    if (s) pool.servers.setAdminState(s, state, "state file");
  }
}

/**
 * The cluster's side of a change (cluster/cluster.ts): `begin` refuses while Redis is away
 * and returns the view before the change; `publish` writes what the change touched, or
 * undoes it here and throws.
 */
export interface SharedChanges {
  begin(): View;
  publish(before: View): Promise<void>;
  /** The view as a state file overlay over `config` (undefined before the first sync). */
  overlayFor(config: Config): StateOverlay | undefined;
}

/** The change was made in memory but the state file could not be written. */
export class PersistError extends Error {}

export interface ControlOptions {
  pools: Pools;
  /** The config as loaded from its source (without the state file). */
  config: Config;
  /** Where the config came from: files it names are read relative to it. */
  configSource?: string;
  logger: Logger;
  /** Where changes are persisted; undefined: nowhere. */
  stateFile?: string;
  /** The state file is another process's (a --workers worker's parent): read, never written. */
  follows?: boolean;
  /** How often a removed server is checked for in-flight requests (ms). Default 100. */
  drainPollMs?: number;
  /** For the jitter of the health loops of pools a reload adds. */
  random?: () => number;
  /**
   * Other processes that apply each change (a --workers parent's workers, which reload the
   * state file): awaited before a change is acknowledged.
   */
  followers?: (why: string) => Promise<void>;
}

export class Control {
  readonly pools: Pools;
  readonly logger: Logger;
  readonly stateFile?: string;
  readonly follows: boolean;
  readonly random?: () => number;
  readonly configSource?: string;
  /** The current base config (the config file as last loaded; reloads replace it). */
  config: Config;
  /** Servers removed and draining before they go. */
  readonly drains: Drains;
  /** Set when lb is part of a cluster: every change is shared through it. */
  shared?: SharedChanges;
  /** Processes that follow this one's changes (see ControlOptions.followers). */
  readonly followers?: (why: string) => Promise<void>;
  /** Pools a reload took out, closed once their last request has finished. */
  readonly retiring = new Map<PoolRuntime, ReturnType<typeof setInterval>>();
  #listeners = new Set<() => void>();
  #saving: Promise<void> = Promise.resolve();

  constructor(opts: ControlOptions) {
    this.pools = opts.pools;
    this.config = opts.config;
    this.logger = opts.logger;
    this.stateFile = opts.stateFile;
    this.follows = opts.follows ?? false;
    this.random = opts.random;
    this.configSource = opts.configSource;
    this.followers = opts.followers;
    this.drains = new Drains(opts.drainPollMs ?? 100, (s, pool, reason) => {
      this.logger.event("admin", `${this.#where(pool)}${s.id} removed (${reason})`, {
        action: "removed",
        pool: pool.name,
        server: s.id,
      });
      this.notify();
    });
  }

  /** Called after every change (the dashboard's event stream pushes a snapshot). */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Tells listeners that something changed (reload calls it once after all its changes). */
  notify(): void {
    for (const fn of this.#listeners) fn();
  }

  /** The pool named `name`, or a 404. */
  pool(name: string): PoolRuntime {
    const p = this.pools.get(name);
    if (!p) throw new ControlError(404, `no pool named "${name}"`);
    return p;
  }

  /**
   * The only pool, for the API's routes without a pool (`/api/servers`, `/api/strategy`):
   * a 409 when there are several, since the change would be ambiguous.
   */
  onlyPool(): PoolRuntime {
    const list = this.pools.list;
    if (list.length === 1) return list[0];
    const names = list.map((p) => p.name).join(", ");
    throw new ControlError(
      409,
      `this lb has ${list.length} pools (${names}): use /api/pools/<pool>/… to say which`,
    );
  }

  get(pool: PoolRuntime, id: string): Server {
    const s = pool.servers.get(id);
    if (!s) throw new ControlError(404, `no server with id "${id}" in pool ${pool.name}`);
    return s;
  }

  /** A pool's running strategy and its options. */
  strategy(pool: PoolRuntime): { name: string; options: HashOptions } {
    return {
      name: pool.balancer.strategy.name,
      options: { ...pool.settings.hash, ...pool.balancer.options.hash },
    };
  }

  /** What the state file holds now: every pool's difference from the config file. */
  overlay(): StateOverlay {
    const base = new Map<string, PoolConfig>(resolvePools(this.config).map((p) => [p.name, p]));
    const pools: StateOverlay["pools"] = {};
    for (const p of this.pools.list) {
      const from = base.get(p.name);
      if (!from) continue; // a pool the config file no longer has: nothing to keep
      const o = diffOverlay(from, {
        servers: p.servers.servers.filter((s) => !this.drains.has(s)),
        strategy: p.balancer.strategy.name,
        hash: this.strategy(p).options,
      });
      if (o.added.length || o.removed.length || Object.keys(o.changed).length || o.strategy) {
        pools[p.name] = o;
      }
    }
    const generated = this.pools.list.some((p) => p.settings.sticky && !p.settings.sticky.secret);
    return { version: 2, pools, ...(generated && { stickySecret: this.pools.stickySecret }) };
  }

  /**
   * Persists the current state (when there is a state file); resolves once it is on disk.
   * Writes are serialised, and each writes the state as it is when the write begins, so the
   * last write always holds every change made before it was asked for.
   */
  save(): Promise<void> {
    const path = this.stateFile;
    if (!path) return Promise.resolve();
    const next = this.#saving.catch(() => {}).then(() => writeStateFile(path, this.overlay()))
      .catch((e) => {
        const why = (e as Error).message;
        this.logger.error(`admin: ${why}`);
        throw new PersistError(
          `the change is in effect but was not saved, so a restart would undo it: ${why}`,
        );
      });
    this.#saving = next;
    return next;
  }

  /**
   * Writes the state file now when a sticky pool signs its cookies with the secret lb made
   * up (it has no `sticky.secret`) and the state file does not hold it yet (`held`, the
   * file's `stickySecret` as read): a restart, or a --workers worker, then signs with the
   * same one. Resolves once written; a failed write is logged and the secret kept in memory.
   * A process that follows another's state file leaves it to that one.
   */
  keepStickySecret(held: string | undefined): Promise<void> {
    if (this.follows || held !== undefined || !this.overlay().stickySecret) {
      return Promise.resolve();
    }
    return this.save().catch(() => {});
  }

  /** How log lines name a pool: not at all for the one pool of a config without pools. */
  #where(pool: PoolRuntime): string {
    return this.config.pools ? `${pool.name}: ` : "";
  }

  /** Before a change: a 503 while the cluster cannot take changes; the view to diff against. */
  #begin(): View | undefined {
    try {
      return this.shared?.begin();
    } catch (e) {
      throw new ControlError(503, (e as Error).message);
    }
  }

  async #done(
    who: string,
    action: string,
    message: string,
    fields: Record<string, unknown>,
    before: View | undefined,
  ) {
    if (before) {
      try {
        await this.shared!.publish(before);
      } catch (e) {
        throw new ControlError(503, (e as Error).message);
      }
    }
    this.logger.event("admin", `${who}: ${message}`, { who, action, ...fields });
    this.notify();
    await this.save();
    await this.followers?.(`admin change: ${message}`);
  }

  // ---- changes (each resolves once the state file holds it) ----

  /** Adds a server to `pool` (already validated by the API's schema). */
  async addServer(pool: PoolRuntime, spec: BackendInput, who: string): Promise<Server> {
    const before = this.#begin();
    let s: Server;
    try {
      s = pool.servers.addServer(spec, { healthy: initiallyHealthy(pool.settings) });
    } catch (e) {
      if (e instanceof DuplicateServerError) throw new ControlError(409, e.message);
      throw new ControlError(400, (e as Error).message);
    }
    const message = `${this.#where(pool)}added ${s.id} (${s.url}, weight ${s.weight})`;
    const fields = { pool: pool.name, server: s.id, url: s.url, weight: s.weight };
    await this.#done(who, "add", message, fields, before);
    return s;
  }

  /** Changes a server's weight and/or admin state. */
  async updateServer(
    pool: PoolRuntime,
    id: string,
    change: { weight?: number; state?: AdminState },
    who: string,
  ): Promise<Server> {
    const s = this.get(pool, id);
    if (this.drains.has(s)) {
      throw new ControlError(409, `server "${id}" is being removed; add it again once it is gone`);
    }
    const before = this.#begin();
    const done: string[] = [];
    if (change.weight !== undefined && change.weight !== s.weight) {
      const from = s.weight;
      try {
        pool.servers.setWeight(s, checkWeight(change.weight));
      } catch (e) {
        throw new ControlError(400, (e as Error).message, "weight");
      }
      done.push(`weight ${from} → ${s.weight}`);
    }
    if (change.state !== undefined) {
      done.push(`${change.state} (was ${stateOf(s, Date.now())})`);
      pool.servers.setAdminState(s, change.state, `admin (${who})`);
    }
    if (done.length) {
      const message = `${this.#where(pool)}${s.id}: ${done.join(", ")}`;
      const fields = { pool: pool.name, server: s.id, ...change };
      await this.#done(who, "update", message, fields, before);
    }
    return s;
  }

  /**
   * Removes a server: it drains at once (no new requests) and leaves the pool when its
   * in-flight requests have finished. Persisted as removed straight away.
   */
  async removeServer(pool: PoolRuntime, id: string, who: string): Promise<Server> {
    const s = this.get(pool, id);
    if (this.drains.has(s)) {
      await this.save();
      return s;
    }
    const before = this.#begin();
    this.drains.start(pool, s, `removed by admin (${who})`);
    const message = `${
      this.#where(pool)
    }removing ${s.id}: draining ${s.inflight} in-flight requests`;
    const fields = { pool: pool.name, server: s.id, inflight: s.inflight };
    await this.#done(who, "remove", message, fields, before);
    return s;
  }

  /** Switches a pool's strategy live; throws ControlError(400) for an unknown name. */
  async setStrategy(
    pool: PoolRuntime,
    name: string,
    hash: Partial<HashOptions>,
    who: string,
  ): Promise<void> {
    const { balancer } = pool;
    const from = balancer.strategy.name;
    const options = { ...balancer.options, hash: { ...this.strategy(pool).options, ...hash } };
    const before = this.#begin();
    try {
      balancer.setStrategy(name, options);
    } catch (e) {
      throw new ControlError(400, (e as Error).message, "name");
    }
    const fields = { pool: pool.name, from, to: name, hash: options.hash };
    const message = `${this.#where(pool)}strategy ${from} → ${name}`;
    await this.#done(who, "strategy", message, fields, before);
  }

  /**
   * A pool the config no longer has: its servers drain, and it is closed (health loop,
   * connections) once nothing is in flight on it. No route names it any more.
   */
  retire(pool: PoolRuntime): void {
    for (const s of pool.servers.servers) this.drains.start(pool, s, "pool removed");
    const t = setInterval(() => {
      if (pool.servers.servers.length > 0) return;
      clearInterval(t);
      this.retiring.delete(pool);
      this.pools.forget(pool);
      void pool.close();
    }, 100);
    this.retiring.set(pool, t);
  }

  /** Clears the drain timers (servers still draining stay in the pool) and the listeners. */
  close(): void {
    this.drains.close();
    for (const [pool, t] of this.retiring) {
      clearInterval(t);
      void pool.close();
    }
    this.#listeners.clear();
  }
}
