/**
 * Config reload (SIGHUP, or `lb serve --watch`): applies a new config to the running lb
 * without dropping in-flight requests.
 *
 * Applied live (reconcile.ts): routes, pools added and removed (a removed pool drains
 * first), and in each pool servers added, removed (they drain first, then go), weights,
 * connection limits, the strategy and its hash options, and upstreamTls: its files are read
 * again at every reload, so a renewed CA or client certificate is taken up without a
 * restart. The state file is applied over the new config, as at start, so changes made
 * through the admin API survive a reload.
 * Everything else (listen addresses, a running pool's timeouts, health, retry, outlier and
 * sticky settings, limits…) takes effect at the next restart, and the reload says so.
 *
 * An invalid config (or an unusable state file, or an upstreamTls file that cannot be used)
 * rejects the whole reload: the problems are logged and nothing changes.
 */
import type { LbMetrics } from "../admin/metrics.ts";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { readUpstreamTls, type TlsClientSettings } from "../proxy/upstream_tls.ts";
import type { Control } from "./control.ts";
import { type Applied, applyStateFile } from "./overlay.ts";
import { reconcile } from "./reconcile.ts";
import { readStateFile } from "./state_file.ts";

export interface ReloadResult {
  ok: boolean;
  /** Why the reload was rejected (the running config is kept). */
  problems: string[];
  /** What changed, one line each. */
  changes: string[];
  /** Settings that changed but take effect only after a restart. */
  needsRestart: string[];
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
  "limits",
  "underscoreHeaders",
  "trustedProxies",
  "log",
  "shutdownTimeout",
  "drainTimeout",
  "cluster",
] as const;

/** A running pool's settings that a reload cannot change (the pool's parts are built from them). */
const POOL_RESTART_ONLY = [
  "timeouts",
  "health",
  "outlier",
  "retry",
  "panicMode",
  "sticky",
] as const;

/**
 * The config without what a reload applies although its section needs a restart otherwise:
 * the certificate files of the listeners (read again, checked and swapped in by lb.ts).
 */
function liveless(c: Config): Config {
  const tls = c.listen.tls && { ...c.listen.tls, cert: undefined, key: undefined };
  return { ...c, listen: { ...c.listen, tls }, admin: { ...c.admin, tls: undefined } };
}

/** What changed that needs a restart: top-level sections, then each running pool's settings. */
function restartOnly(control: Control, base: Config, applied: Applied): string[] {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const out: string[] = RESTART_ONLY.filter((key) =>
    !same(liveless(control.config)[key], liveless(base)[key])
  );
  for (const { pool } of applied.pools) {
    const running = control.pools.get(pool.name);
    if (!running) continue;
    for (const key of POOL_RESTART_ONLY) {
      if (same(running.settings[key], pool[key])) continue;
      out.push(base.pools ? `pools.${pool.name}.${key}` : key);
    }
  }
  return out;
}

function problemsOf(e: unknown): string[] {
  if (e instanceof ConfigError) return e.problems.map((p) => `${e.source}: ${p}`);
  return [e instanceof Error ? e.message : String(e)];
}

/** The new config, with the state file over it and its TLS files read, or the problems. */
async function load(
  control: Control,
  from: ConfigLoader,
): Promise<
  { base: Config; applied: Applied; tls: Map<string, TlsClientSettings> } | { problems: string[] }
> {
  try {
    const base = typeof from === "function" ? await from() : from;
    // In a cluster, the shared view (once read from Redis) stands where the state file does.
    const overlay = control.shared?.overlayFor(base) ??
      (control.stateFile ? readStateFile(control.stateFile) : undefined);
    const tls = readUpstreamTls(base, control.configSource);
    return { base, applied: applyStateFile(base, overlay), tls };
  } catch (e) {
    return { problems: problemsOf(e) };
  }
}

export function createReloader(control: Control, metrics?: LbMetrics): Reloader {
  const logger = control.logger;
  let chain: Promise<unknown> = Promise.resolve();

  const run = async (from: ConfigLoader, why: string): Promise<ReloadResult> => {
    const loaded = await load(control, from);
    if ("problems" in loaded) {
      const { problems } = loaded;
      const message = `reload (${why}) rejected; the running config is kept: ${
        problems.join("; ")
      }`;
      logger.error(message, { kind: "reload", problems });
      metrics?.reloaded(false);
      return { ok: false, problems, changes: [], needsRestart: [] };
    }
    const { base, applied, tls } = loaded;
    const needsRestart = restartOnly(control, base, applied);
    const changes = reconcile(control, applied, tls);
    control.config = base;
    // A sticky pool this reload added signs with the secret made up at start, which the state
    // file holds only if a sticky pool existed then.
    await control.keepStickySecret(applied.stickySecret);
    control.notify();
    metrics?.reloaded(true);
    const what = changes.length ? changes.join("; ") : "no route, pool, server or strategy changes";
    logger.event("reload", `config reloaded (${why}): ${what}`, { why, changes });
    if (needsRestart.length) {
      logger.event(
        "reload",
        `changes to ${
          needsRestart.join(", ")
        } take effect after a restart (listen addresses cannot change live)`,
        { needsRestart },
      );
    }
    return { ok: true, problems: [], changes, needsRestart: [...needsRestart] };
  };

  return {
    reload(from, why) {
      const p = chain.then(() => run(from, why));
      chain = p.catch(() => {});
      return p;
    },
  };
}
