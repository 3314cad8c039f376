/**
 * Control: the operator's changes to a running lb, from the admin API and config reloads.
 * Every membership, weight, admin-state and strategy change goes through here, so each is
 * logged once (with who asked), persisted to the state file before it is acknowledged, and
 * announced to the dashboard.
 */
import type { Balancer } from "../balancing/balancer.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log.ts";
import {
  DuplicateServerError,
  parseBackendUrl,
  type Server,
  type ServerPool,
  type ServerStateName,
  stateOf,
} from "../balancing/pool.ts";
import type { StrategyOptions } from "../balancing/strategies/registry.ts";
import { type AdminState, diffOverlay, writeStateFile } from "./state_file.ts";

/** A change that cannot be made: `status` says which HTTP answer fits (400, 404, 409). */
export class ControlError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The change was made in memory but the state file could not be written. */
export class PersistError extends Error {}

/** How the admin API shows a server. */
export interface ServerView {
  id: string;
  url: string;
  weight: number;
  state: ServerStateName;
  /** True while a removed server drains before it goes. */
  removing: boolean;
  inflight: number;
  maxConnections: number;
  requests: number;
  /** Tries that failed (connection errors, timeouts, cut responses). */
  errors: number;
  /** 5xx answers the server sent. */
  responses5xx: number;
  latencyEwmaMs: number;
  ejections: number;
  ejectedUntil: string | null;
  lastHealth: { ok: boolean | null; at: string | null; detail: string | null };
}

export interface ControlOptions {
  pool: ServerPool;
  balancer: Balancer;
  /** The config as loaded from its source (without the state file). */
  config: Config;
  logger: Logger;
  /** Where changes are persisted; undefined: nowhere. */
  stateFile?: string;
  /** How often a removed server is checked for in-flight requests (ms). Default 100. */
  drainPollMs?: number;
  /** Where 5xx answers per server are counted (the metrics). */
  metrics?: { responses5xx(id: string): number };
}

/** One server add request, as the API takes it. */
export interface AddSpec {
  url: string;
  name?: string;
  weight?: number;
  maxConnections?: number;
}

export class Control {
  readonly pool: ServerPool;
  readonly balancer: Balancer;
  readonly logger: Logger;
  readonly stateFile?: string;
  /** The current base config (the config file as last loaded; reloads replace it). */
  config: Config;
  #removing = new Map<Server, ReturnType<typeof setInterval>>();
  #listeners = new Set<() => void>();
  #saving: Promise<void> = Promise.resolve();
  #drainPollMs: number;
  #metrics?: { responses5xx(id: string): number };
  #closed = false;

  constructor(opts: ControlOptions) {
    this.pool = opts.pool;
    this.balancer = opts.balancer;
    this.config = opts.config;
    this.logger = opts.logger;
    this.stateFile = opts.stateFile;
    this.#drainPollMs = opts.drainPollMs ?? 100;
    this.#metrics = opts.metrics;
  }

  /** Called after every change (the dashboard's event stream pushes a snapshot). */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #changed(): void {
    for (const fn of this.#listeners) fn();
  }

  /** Whether `s` has been removed and is draining before it goes. */
  isRemoving(s: Server): boolean {
    return this.#removing.has(s);
  }

  /** 5xx answers `s` has sent (0 without metrics). */
  responses5xx(s: Server): number {
    return this.#metrics?.responses5xx(s.id) ?? 0;
  }

  view(s: Server, now = Date.now()): ServerView {
    return {
      id: s.id,
      url: s.url,
      weight: s.weight,
      state: stateOf(s, now),
      removing: this.#removing.has(s),
      inflight: s.inflight,
      maxConnections: s.maxConnections,
      requests: s.requests,
      errors: s.errors,
      responses5xx: this.responses5xx(s),
      latencyEwmaMs: Math.round(s.latency.value * 100) / 100,
      ejections: s.ejections,
      ejectedUntil: s.ejectedUntil > now ? new Date(s.ejectedUntil).toISOString() : null,
      lastHealth: {
        ok: s.health.ok ?? null,
        at: s.health.at ? new Date(s.health.at).toISOString() : null,
        detail: s.health.detail ?? null,
      },
    };
  }

  get(id: string): Server {
    const s = this.pool.get(id);
    if (!s) throw new ControlError(404, `no server with id "${id}"`);
    return s;
  }

  /** The running strategy and its options. */
  strategy(): { name: string; options: Config["hash"] } {
    return {
      name: this.balancer.strategy.name,
      options: { ...this.config.hash, ...this.balancer.options.hash } as Config["hash"],
    };
  }

  /**
   * Persists the current state (when there is a state file); resolves once it is on disk.
   * Writes are serialised, and each writes the state as it is when the write begins, so the
   * last write always holds every change made before it was asked for.
   */
  save(): Promise<void> {
    const path = this.stateFile;
    if (!path) return Promise.resolve();
    const next = this.#saving.catch(() => {}).then(() => {
      const overlay = diffOverlay(this.config, {
        servers: this.pool.servers.filter((s) => !this.#removing.has(s)),
        strategy: this.balancer.strategy.name,
        hash: this.strategy().options,
      });
      return writeStateFile(path, overlay);
    }).catch((e) => {
      this.logger.error(`admin: ${(e as Error).message}`);
      throw new PersistError(
        `the change is in effect but was not saved, so a restart would undo it: ${
          (e as Error).message
        }`,
      );
    });
    this.#saving = next;
    return next;
  }

  #log(who: string, action: string, message: string, fields: Record<string, unknown> = {}) {
    this.logger.event("admin", `${who}: ${message}`, { who, action, ...fields });
  }

  // ---- changes (each returns after the state file holds it) ----

  /** Adds a server. `healthy` is its state until the first health checks. */
  async addServer(spec: AddSpec, who: string, healthy: boolean): Promise<Server> {
    try {
      parseBackendUrl(spec.url);
    } catch (e) {
      throw new ControlError(400, (e as Error).message, "url");
    }
    let s: Server;
    try {
      s = this.pool.addServer(spec, { healthy });
    } catch (e) {
      if (e instanceof DuplicateServerError) throw new ControlError(409, e.message);
      throw new ControlError(400, (e as Error).message, "weight");
    }
    this.#log(who, "add", `added ${s.id} (${s.url}, weight ${s.weight})`, {
      server: s.id,
      url: s.url,
      weight: s.weight,
    });
    this.#changed();
    await this.save();
    return s;
  }

  /** Changes a server's weight and/or admin state. */
  async updateServer(
    id: string,
    change: { weight?: number; state?: AdminState },
    who: string,
  ): Promise<Server> {
    const s = this.get(id);
    if (this.#removing.has(s)) {
      throw new ControlError(409, `server "${id}" is being removed; add it again once it is gone`);
    }
    const done: string[] = [];
    if (change.weight !== undefined && change.weight !== s.weight) {
      const from = s.weight;
      try {
        this.pool.setWeight(s, change.weight);
      } catch (e) {
        throw new ControlError(400, (e as Error).message, "weight");
      }
      done.push(`weight ${from} → ${s.weight}`);
    }
    if (change.state !== undefined) {
      const from = stateOf(s, Date.now());
      this.pool.setAdminState(s, change.state, `admin (${who})`);
      done.push(`${change.state} (was ${from})`);
    }
    if (done.length) {
      this.#log(who, "update", `${s.id}: ${done.join(", ")}`, { server: s.id, ...change });
      this.#changed();
      await this.save();
    }
    return s;
  }

  /**
   * Removes a server: it drains at once (no new requests) and leaves the pool when its
   * in-flight requests have finished. Persisted as removed straight away.
   */
  async removeServer(id: string, who: string): Promise<Server> {
    const s = this.get(id);
    if (!this.#removing.has(s)) {
      this.#log(who, "remove", `removing ${s.id}: draining ${s.inflight} in-flight requests`, {
        server: s.id,
        inflight: s.inflight,
      });
      this.drainAndRemove(s, `removed by admin (${who})`);
      this.#changed();
    }
    await this.save();
    return s;
  }

  /** Switches strategy live; throws ControlError(400) for an unknown name or bad options. */
  async setStrategy(name: string, hash: StrategyOptions["hash"], who: string): Promise<void> {
    const from = this.balancer.strategy.name;
    const options: StrategyOptions = {
      ...this.balancer.options,
      hash: { ...this.config.hash, ...this.balancer.options.hash, ...hash },
    };
    try {
      this.balancer.setStrategy(name, options);
    } catch (e) {
      throw new ControlError(400, (e as Error).message, "name");
    }
    this.#log(who, "strategy", `strategy ${from} → ${name}`, {
      from,
      to: name,
      hash: options.hash,
    });
    this.#changed();
    await this.save();
  }

  // ---- building blocks for reload ----

  /** Drains `s` and removes it from the pool once nothing is in flight (or at close). */
  drainAndRemove(s: Server, reason: string): void {
    if (this.#removing.has(s) || this.#closed) return;
    this.pool.setAdminState(s, "draining", reason);
    const finish = () => {
      const t = this.#removing.get(s);
      if (t === undefined) return;
      clearInterval(t);
      this.#removing.delete(s);
      if (this.pool.get(s.id) === s) this.pool.removeServer(s.id);
      this.logger.event("admin", `${s.id} removed (${reason})`, {
        action: "removed",
        server: s.id,
      });
      this.#changed();
    };
    this.#removing.set(
      s,
      setInterval(() => {
        if (s.inflight <= 0) finish();
      }, this.#drainPollMs),
    );
    if (s.inflight <= 0) queueMicrotask(finish);
  }

  /** Stops a pending removal (a reload put the server back). */
  cancelRemoval(s: Server): boolean {
    const t = this.#removing.get(s);
    if (t === undefined) return false;
    clearInterval(t);
    this.#removing.delete(s);
    return true;
  }

  /** Tells listeners that something changed (reload uses it once after all its changes). */
  notify(): void {
    this.#changed();
  }

  /** Clears the drain timers; servers still draining stay in the pool. */
  close(): void {
    this.#closed = true;
    for (const t of this.#removing.values()) clearInterval(t);
    this.#removing.clear();
    this.#listeners.clear();
  }
}
