/**
 * The state file's contents as a difference from the config file, per pool: servers added
 * through the API, config servers removed through it, weights and admin states that differ
 * from the config, and the strategy when it was switched. Because it is a difference, edits
 * to lb.yaml still take effect for everything the API did not touch.
 */
import type { Server } from "../balancing/server.ts";
import {
  type AdminState,
  backendIdentity,
  type BackendSpec,
  isDefaultId,
} from "../config/backend.ts";
import { type PoolConfig, resolvePools, resolveRoutes } from "../config/pools.ts";
import type { RouteConfig } from "../config/routes.ts";
import type { Config } from "../config/schema.ts";
import type { HashOptions } from "../config/strategy.ts";
import type { PoolOverlay, StateOverlay } from "./state_file.ts";

/** One pool with its overlay applied, and the admin states to set on its servers. */
export interface AppliedPool {
  pool: PoolConfig;
  adminStates: Map<string, AdminState>;
}

/** A config with the state file over it: what lb runs with. */
export interface Applied {
  /** The config file as loaded (the base the state file is a difference from). */
  config: Config;
  pools: AppliedPool[];
  routes: RouteConfig[];
  /** The sticky cookies' key the state file keeps, if it keeps one. */
  stickySecret?: string;
}

/** The config's pools and routes with the state file over them. */
export function applyStateFile(config: Config, state: StateOverlay | undefined): Applied {
  const pools = resolvePools(config).map((p) => applyOverlay(p, state?.pools[p.name]));
  return {
    config,
    pools,
    routes: resolveRoutes(config),
    ...(state?.stickySecret && { stickySecret: state.stickySecret }),
  };
}

/** Applies one pool's overlay over the pool as the config file has it. */
export function applyOverlay(config: PoolConfig, overlay: PoolOverlay | undefined): AppliedPool {
  const adminStates = new Map<string, AdminState>();
  if (!overlay) return { pool: config, adminStates };
  const removed = new Set(overlay.removed);
  const backends: BackendSpec[] = [];
  for (const b of config.backends) {
    const id = backendIdentity(b).id;
    if (removed.has(id)) continue;
    const change = overlay.changed[id];
    if (change?.state && change.state !== "enabled") adminStates.set(id, change.state);
    backends.push(change?.weight ? { ...b, weight: change.weight } : b);
  }
  for (const { state, ...a } of overlay.added) {
    const who = backendIdentity(a);
    // Added through the API and since written into the config file: the file's entry wins.
    const taken = backends.some((b) => {
      const other = backendIdentity(b);
      return other.id === who.id || other.origin === who.origin;
    });
    if (taken) continue;
    backends.push(a);
    if (state !== "enabled") adminStates.set(who.id, state);
  }
  const out: PoolConfig = { ...config, backends };
  if (overlay.strategy) {
    out.strategy = overlay.strategy.name;
    out.hash = { ...config.hash, ...overlay.strategy.hash };
  }
  return { pool: out, adminStates };
}

/** What the running servers and strategy look like, for {@link diffOverlay}. */
export interface Current {
  servers: readonly Server[];
  strategy: string;
  hash: HashOptions;
}

/** The admin state of a server, as the state file and reload name it. */
export function adminStateOf(s: Server): AdminState {
  return !s.enabled ? "disabled" : s.draining ? "draining" : "enabled";
}

/** Whether two sets of hash options are the same. */
export function sameHash(a: HashOptions, b: HashOptions): boolean {
  return a.key === b.key && a.balanceFactor === b.balanceFactor && a.vnodes === b.vnodes &&
    a.tableSize === b.tableSize;
}

/** The overlay that turns the pool `config` into `current`: what the state file must hold. */
export function diffOverlay(config: PoolConfig, current: Current): PoolOverlay {
  const base = new Map(config.backends.map((b) => [backendIdentity(b).id, b]));
  const overlay: PoolOverlay = { added: [], removed: [], changed: {} };
  const seen = new Set<string>();
  for (const s of current.servers) {
    const b = base.get(s.id);
    if (b && backendIdentity(b).origin === s.url) {
      seen.add(s.id);
      const change: { weight?: number; state?: AdminState } = {};
      if (s.weight !== b.weight) change.weight = s.weight;
      if (adminStateOf(s) !== "enabled") change.state = adminStateOf(s);
      if (Object.keys(change).length) overlay.changed[s.id] = change;
      continue;
    }
    overlay.added.push({
      url: s.url,
      ...(!isDefaultId(s.url, s.id) && { name: s.id }),
      weight: s.weight,
      maxConnections: s.maxConnections,
      state: adminStateOf(s),
    });
  }
  for (const id of base.keys()) if (!seen.has(id)) overlay.removed.push(id);
  const same = sameHash(current.hash, config.hash);
  if (current.strategy !== config.strategy || !same) {
    overlay.strategy = { name: current.strategy, ...(!same && { hash: { ...current.hash } }) };
  }
  return overlay;
}
