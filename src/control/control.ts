/**
 * Control: the one door for the operator's changes to a running lb. A change from the admin
 * API goes through a method here, so it is logged once (with who asked), persisted to the
 * state file before it is acknowledged, and announced to the dashboard. A reload makes the
 * pool match a config through reconcile.ts, in this same room, with the control's drains,
 * and logs its changes as one event (they come from lb.yaml, so the state file is not
 * written). Nothing outside src/control/ changes membership, weights, caps or admin states.
 */
import { stateOf } from "../balancing/availability.ts";
import type { Balancer } from "../balancing/balancer.ts";
import { DuplicateServerError, type ServerPool } from "../balancing/pool.ts";
import type { Server } from "../balancing/server.ts";
import { type AdminState, type BackendInput, checkWeight } from "../config/backend.ts";
import type { Config } from "../config/schema.ts";
import { HASH_DEFAULTS, type HashOptions } from "../config/strategy.ts";
import type { Logger } from "../log.ts";
import { Drains } from "./drains.ts";
import { diffOverlay } from "./overlay.ts";
import { writeStateFile } from "./state_file.ts";

/** A change that cannot be made: `status` says which HTTP answer fits (400, 404, 409). */
export class ControlError extends Error {
  constructor(readonly status: 400 | 404 | 409, message: string, readonly field?: string) {
    super(message);
  }
}

/** The change was made in memory but the state file could not be written. */
export class PersistError extends Error {}

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
}

export class Control {
  readonly pool: ServerPool;
  readonly balancer: Balancer;
  readonly logger: Logger;
  readonly stateFile?: string;
  /** The current base config (the config file as last loaded; reloads replace it). */
  config: Config;
  /** Servers removed and draining before they go. */
  readonly drains: Drains;
  #listeners = new Set<() => void>();
  #saving: Promise<void> = Promise.resolve();

  constructor(opts: ControlOptions) {
    this.pool = opts.pool;
    this.balancer = opts.balancer;
    this.config = opts.config;
    this.logger = opts.logger;
    this.stateFile = opts.stateFile;
    this.drains = new Drains(opts.pool, opts.drainPollMs ?? 100, (s, reason) => {
      this.logger.event("admin", `${s.id} removed (${reason})`, {
        action: "removed",
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

  get(id: string): Server {
    const s = this.pool.get(id);
    if (!s) throw new ControlError(404, `no server with id "${id}"`);
    return s;
  }

  /** The running strategy and its options. */
  strategy(): { name: string; options: HashOptions } {
    return {
      name: this.balancer.strategy.name,
      options: { ...HASH_DEFAULTS, ...this.config.hash, ...this.balancer.options.hash },
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
        servers: this.pool.servers.filter((s) => !this.drains.has(s)),
        strategy: this.balancer.strategy.name,
        hash: this.strategy().options,
      });
      return writeStateFile(path, overlay);
    }).catch((e) => {
      this.logger.error(`admin: ${(e as Error).message}`);
      const why = (e as Error).message;
      throw new PersistError(
        `the change is in effect but was not saved, so a restart would undo it: ${why}`,
      );
    });
    this.#saving = next;
    return next;
  }

  #done(who: string, action: string, message: string, fields: Record<string, unknown>) {
    this.logger.event("admin", `${who}: ${message}`, { who, action, ...fields });
    this.notify();
    return this.save();
  }

  // ---- changes (each resolves once the state file holds it) ----

  /** Adds a server (already validated by the API's schema). `healthy`: until its first checks. */
  async addServer(spec: BackendInput, who: string, healthy: boolean): Promise<Server> {
    let s: Server;
    try {
      s = this.pool.addServer(spec, { healthy });
    } catch (e) {
      if (e instanceof DuplicateServerError) throw new ControlError(409, e.message);
      throw new ControlError(400, (e as Error).message);
    }
    const message = `added ${s.id} (${s.url}, weight ${s.weight})`;
    await this.#done(who, "add", message, { server: s.id, url: s.url, weight: s.weight });
    return s;
  }

  /** Changes a server's weight and/or admin state. */
  async updateServer(
    id: string,
    change: { weight?: number; state?: AdminState },
    who: string,
  ): Promise<Server> {
    const s = this.get(id);
    if (this.drains.has(s)) {
      throw new ControlError(409, `server "${id}" is being removed; add it again once it is gone`);
    }
    const done: string[] = [];
    if (change.weight !== undefined && change.weight !== s.weight) {
      const from = s.weight;
      try {
        this.pool.setWeight(s, checkWeight(change.weight));
      } catch (e) {
        throw new ControlError(400, (e as Error).message, "weight");
      }
      done.push(`weight ${from} → ${s.weight}`);
    }
    if (change.state !== undefined) {
      done.push(`${change.state} (was ${stateOf(s, Date.now())})`);
      this.pool.setAdminState(s, change.state, `admin (${who})`);
    }
    if (done.length) {
      await this.#done(who, "update", `${s.id}: ${done.join(", ")}`, { server: s.id, ...change });
    }
    return s;
  }

  /**
   * Removes a server: it drains at once (no new requests) and leaves the pool when its
   * in-flight requests have finished. Persisted as removed straight away.
   */
  async removeServer(id: string, who: string): Promise<Server> {
    const s = this.get(id);
    if (this.drains.has(s)) {
      await this.save();
      return s;
    }
    this.drains.start(s, `removed by admin (${who})`);
    const message = `removing ${s.id}: draining ${s.inflight} in-flight requests`;
    await this.#done(who, "remove", message, { server: s.id, inflight: s.inflight });
    return s;
  }

  /** Switches strategy live; throws ControlError(400) for an unknown name. */
  async setStrategy(name: string, hash: Partial<HashOptions>, who: string): Promise<void> {
    const from = this.balancer.strategy.name;
    const options = { ...this.balancer.options, hash: { ...this.strategy().options, ...hash } };
    try {
      this.balancer.setStrategy(name, options);
    } catch (e) {
      throw new ControlError(400, (e as Error).message, "name");
    }
    const fields = { from, to: name, hash: options.hash };
    await this.#done(who, "strategy", `strategy ${from} → ${name}`, fields);
  }

  /** At start: the admin states the state file kept (before any traffic, so nothing is logged). */
  restore(adminStates: ReadonlyMap<string, AdminState>): void {
    for (const [id, state] of adminStates) {
      const s = this.pool.get(id);
      if (s) this.pool.setAdminState(s, state, "state file");
    }
  }

  /** Clears the drain timers (servers still draining stay in the pool) and the listeners. */
  close(): void {
    this.drains.close();
    this.#listeners.clear();
  }
}
