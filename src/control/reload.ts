/**
 * Config reload (SIGHUP, or `lb serve --watch`): applies a new config to the running lb
 * without dropping in-flight requests.
 *
 * Applied live: servers added, removed (they drain first, then go), weights, connection
 * limits, the strategy and its hash options. The state file is applied over the new config,
 * as at start, so changes made through the admin API survive a reload. Everything else
 * (listen addresses, timeouts, health, retry, limits…) takes effect at the next restart,
 * and the reload says so in the log.
 *
 * An invalid config (or an unusable state file) rejects the whole reload: the problems are
 * logged and nothing changes.
 */
import { dirname, resolve } from "node:path";
import { type Config, ConfigError } from "../config/config.ts";
import type { Control } from "./control.ts";
import type { LbMetrics } from "../admin/metrics.ts";
import { applyOverlay, idOf, readStateFile } from "./state_file.ts";
import { parseBackendUrl } from "../balancing/pool.ts";

export interface ReloadResult {
  ok: boolean;
  /** Why the reload was rejected (the running config is kept). */
  problems: string[];
  /** What changed, one line each. */
  changes: string[];
  /** Settings that changed but take effect only after a restart. */
  needsRestart: string[];
}

export interface ReloaderOptions {
  control: Control;
  metrics?: LbMetrics;
}

export type ConfigLoader = Config | (() => Config | Promise<Config>);

export interface Reloader {
  /** Loads and applies a new config; reloads run one at a time. Never rejects. */
  reload(next: ConfigLoader, why: string): Promise<ReloadResult>;
}

/** Config sections (or fields) that a reload cannot apply to a running lb. */
const RESTART_ONLY = [
  "listen",
  "admin",
  "timeouts",
  "health",
  "outlier",
  "retry",
  "limits",
  "trustedProxies",
  "log",
  "shutdownTimeout",
  "panicMode",
] as const;

function origin(url: string): string {
  const u = parseBackendUrl(url);
  return `${u.protocol}//${u.host}`;
}

function problemsOf(e: unknown): string[] {
  if (e instanceof ConfigError) return e.problems.map((p) => `${e.source}: ${p}`);
  return [e instanceof Error ? e.message : String(e)];
}

export function createReloader(opts: ReloaderOptions): Reloader {
  const { control, metrics } = opts;
  const logger = control.logger;
  let chain: Promise<unknown> = Promise.resolve();

  const run = async (load: ConfigLoader, why: string): Promise<ReloadResult> => {
    let next: Config;
    let applied: ReturnType<typeof applyOverlay>;
    try {
      next = typeof load === "function" ? await load() : load;
      applied = applyOverlay(
        next,
        control.stateFile ? readStateFile(control.stateFile) : undefined,
      );
    } catch (e) {
      const problems = problemsOf(e);
      logger.error(
        `reload (${why}) rejected; the running config is kept: ${problems.join("; ")}`,
        { kind: "reload", problems },
      );
      metrics?.reloaded(false);
      return { ok: false, problems, changes: [], needsRestart: [] };
    }
    const changes = apply(control, applied);
    const needsRestart: string[] = [];
    for (const key of RESTART_ONLY) {
      if (JSON.stringify(control.config[key]) !== JSON.stringify(next[key])) needsRestart.push(key);
    }
    control.config = next;
    control.notify();
    metrics?.reloaded(true);
    logger.event(
      "reload",
      `config reloaded (${why}): ${
        changes.length ? changes.join("; ") : "no server or strategy changes"
      }`,
      { why, changes },
    );
    if (needsRestart.length) {
      logger.event(
        "reload",
        `changes to ${
          needsRestart.join(", ")
        } take effect after a restart (listen addresses cannot change live)`,
        { needsRestart },
      );
    }
    return { ok: true, problems: [], changes, needsRestart };
  };

  return {
    reload(load, why) {
      const p = chain.then(() => run(load, why));
      chain = p.catch(() => {});
      return p;
    },
  };
}

/** Makes the pool and strategy match `applied`; returns what changed. */
function apply(
  control: Control,
  applied: ReturnType<typeof applyOverlay>,
): string[] {
  const { pool, balancer } = control;
  const desired = applied.config;
  const changes: string[] = [];
  const wanted = new Map(desired.backends.map((b) => [idOf(b), b]));
  const healthy = desired.health.assumeHealthy || !desired.health.enabled;

  for (const s of pool.servers) {
    const b = wanted.get(s.id);
    if (b && origin(b.url) === s.url) continue;
    if (!control.isRemoving(s)) {
      control.drainAndRemove(s, "removed from the config");
      changes.push(`removing ${s.id} (draining)`);
    }
  }

  for (const [id, b] of wanted) {
    const url = origin(b.url);
    const s = pool.get(id);
    if (s && s.url === url) {
      if (control.cancelRemoval(s)) {
        pool.setAdminState(s, applied.adminStates.get(id) ?? "enabled", "back in the config");
        changes.push(`kept ${id} (it was being removed)`);
      }
      if (s.weight !== b.weight) {
        changes.push(`${id} weight ${s.weight} → ${b.weight}`);
        pool.setWeight(s, b.weight);
      }
      if (s.maxConnections !== b.maxConnections) {
        changes.push(`${id} maxConnections ${s.maxConnections} → ${b.maxConnections}`);
        pool.setMaxConnections(s, b.maxConnections);
      }
      // Admin states kept in the state file (e.g. set through the parent's admin API, for a
      // --workers worker). Without a state file they live in memory only and stay as they are.
      const want = applied.adminStates.get(id) ?? "enabled";
      const have = !s.enabled ? "disabled" : s.draining ? "draining" : "enabled";
      if (control.stateFile && want !== have && !control.isRemoving(s)) {
        pool.setAdminState(s, want, "state file");
        changes.push(`${id} ${have} → ${want}`);
      }
      continue;
    }
    // The id or the url is still held by a server on its way out: let it go now. Its
    // in-flight requests are not cut (removal only stops new picks).
    for (const old of pool.servers) {
      if (old.id === id || old.url === url) {
        control.cancelRemoval(old);
        pool.removeServer(old.id);
      }
    }
    const added = pool.addServer(
      { url: b.url, name: b.name, weight: b.weight, maxConnections: b.maxConnections },
      { healthy },
    );
    const st = applied.adminStates.get(id);
    if (st && st !== "enabled") pool.setAdminState(added, st, "state file");
    changes.push(`added ${id} (${added.url}, weight ${added.weight})`);
  }

  const cur = balancer.options.hash ?? {};
  const h = desired.hash;
  const sameHash = cur.key === h.key && cur.balanceFactor === h.balanceFactor &&
    cur.vnodes === h.vnodes && cur.tableSize === h.tableSize;
  if (balancer.strategy.name !== desired.strategy || !sameHash) {
    const from = balancer.strategy.name;
    balancer.setStrategy(desired.strategy, {
      ...balancer.options,
      hash: h,
    });
    changes.push(
      from === desired.strategy
        ? `${from} options changed`
        : `strategy ${from} → ${desired.strategy}`,
    );
  }
  return changes;
}

/**
 * Calls `onChange` (debounced) when the file at `path` changes. Watches the directory, not
 * the file, because editors save by writing a new file and renaming it over the old one.
 */
export function watchConfigFile(
  path: string,
  onChange: () => void,
  debounceMs = 200,
): { close(): void } {
  const abs = resolve(path);
  const watcher = Deno.watchFs(dirname(abs), { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  (async () => {
    try {
      for await (const ev of watcher) {
        if (closed) break;
        if (ev.kind === "access" || !ev.paths.some((p) => resolve(p) === abs)) continue;
        clearTimeout(timer);
        timer = setTimeout(() => {
          timer = undefined;
          if (!closed) onChange();
        }, debounceMs);
      }
    } catch {
      // the watcher was closed
    }
  })();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // already closed
      }
    },
  };
}
