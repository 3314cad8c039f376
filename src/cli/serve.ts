import { BUILT_IN, ConfigError, loadConfig } from "../config/load.ts";
import { applyOverrides, type ConfigOverrides } from "../config/overrides.ts";
import type { Config } from "../config/schema.ts";
import { runLbUntilSignal } from "./_run.ts";
import { parseBackendUrl } from "../config/backend.ts";
import {
  type Command,
  intFlag,
  logFormatFlag,
  noPositionals,
  parseFlags,
  UsageError,
} from "./_flags.ts";
import { startWorkers, workerArgs, type Workers } from "./_workers.ts";
import { CHANNEL_ENV, followParent } from "../workers/follower.ts";
import { WorkerHub } from "../workers/hub.ts";
import { createLogger, resolveFormat } from "../log.ts";

const USAGE = `Usage: lb serve [flags]

Runs the load balancer: the traffic listener and the admin listener.

Flags (override the config file):
  --config FILE         config file (default: ./lb.yaml if present, else built-in defaults)
  --strategy NAME       balancing strategy (round-robin, weighted-round-robin, least-conn,
                        fastest, p2c, random, consistent-hash, maglev)
  --host H              traffic listen address (default 127.0.0.1)
  --port N              traffic listen port (default 8000; 0 = any free port)
  --backend URL         a backend origin such as http://127.0.0.1:9001 (or https://…);
                        repeat for more; replaces the config file's backend list
  --admin-port N        admin listen port (default 8001; 0 = any free port)
  --tls-cert FILE       serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain…
  --tls-key FILE        …and this key (both, or neither; they replace listen.tls)
  --log-format F        json or text (default: text on a terminal, json otherwise)
  --watch               reload when the config file changes (SIGHUP always reloads)
  --workers N|auto      run N lb processes sharing the traffic port (Linux, SO_REUSEPORT;
                        default 1; auto: one per core). The first owns the admin listener,
                        whose metrics and views add up all of them; admin changes reach
                        every worker before the API answers; a worker that dies is restarted.
  -h, --help            show this help

Reload (SIGHUP or --watch) applies added, removed (drained first) and re-weighted
backends and the strategy live; an invalid file is rejected and the running config kept.

Example:
  lb serve --strategy least-conn --backend http://127.0.0.1:9001 --backend http://127.0.0.1:9002
`;

/** `--workers N` (1-64) or `auto` (one per core); more than one needs Linux. */
function workersFlag(value: string | undefined, command: string): number {
  const workers = value === "auto"
    ? Math.min(64, Math.max(1, navigator.hardwareConcurrency))
    : intFlag(value, "--workers", command, 1, 64) ?? 1;
  if (workers > 1 && Deno.build.os !== "linux") {
    throw new UsageError("--workers needs Linux (SO_REUSEPORT spreads connections there)", command);
  }
  return workers;
}

/** Parses serve's flags into config overrides (shared with `demo`). */
export function parseServeFlags(
  args: string[],
  command = "serve",
): {
  configPath?: string;
  overrides: ConfigOverrides;
  watch: boolean;
  workers: number;
  worker?: number;
} {
  const { values, positionals } = parseFlags(args, {
    config: { type: "string" },
    strategy: { type: "string" },
    host: { type: "string" },
    port: { type: "string" },
    backend: { type: "string", multiple: true },
    "admin-port": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
    "log-format": { type: "string" },
    watch: { type: "boolean" },
    workers: { type: "string" },
    // Internal: set by the --workers parent on the processes it starts.
    worker: { type: "string" },
  }, command);
  noPositionals(positionals, command);
  const logFormat = logFormatFlag(values["log-format"], command);
  for (const b of values.backend ?? []) {
    try {
      parseBackendUrl(b);
    } catch (e) {
      throw new UsageError(
        `--backend must be an http:// or https:// origin like http://127.0.0.1:9001: ${
          (e as Error).message
        }`,
        command,
      );
    }
  }
  const cert = values["tls-cert"];
  const key = values["tls-key"];
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together", command);
  }
  const workers = workersFlag(values.workers, command);
  return {
    configPath: values.config,
    watch: values.watch ?? false,
    workers,
    worker: intFlag(values.worker, "--worker", command, 1, 64),
    overrides: {
      strategy: values.strategy,
      host: values.host,
      port: intFlag(values.port, "--port", command, 0, 65535),
      backends: values.backend,
      adminPort: intFlag(values["admin-port"], "--admin-port", command, 0, 65535),
      logFormat,
      ...(cert !== undefined && { tls: { cert, key: key! } }),
    },
  };
}

/** Loads the config and applies flags; flag problems are usage errors (exit 2). */
export async function resolveConfig(
  configPath: string | undefined,
  overrides: ConfigOverrides,
  command: string,
): Promise<{ config: Config; source: string }> {
  const { config, source } = await loadConfig(configPath);
  try {
    return { config: applyOverrides(config, overrides), source };
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.problems.join("; "), command);
    throw e;
  }
}

export const serveCommand: Command = {
  name: "serve",
  summary: "run the load balancer",
  usage: USAGE,
  async run(args) {
    const { configPath, overrides, watch, workers, worker } = parseServeFlags(args);
    const resolved = await resolveConfig(configPath, overrides, "serve");
    const { source } = resolved;
    const config = resolved.config;
    const fromFile = source !== BUILT_IN;
    if (watch && !fromFile) {
      throw new UsageError(
        "--watch needs a config file: pass --config FILE or create ./lb.yaml",
        "serve",
      );
    }
    // Reloads read the file lb started from, so a vanished lb.yaml is an error, not a silent
    // return to the built-in defaults.
    const path = configPath ?? (fromFile ? source : undefined);
    const reload = async () => (await resolveConfig(path, overrides, "serve")).config;
    if (worker !== undefined) return await runWorker(config, source, reload, worker);
    const hub = workers > 1
      ? await WorkerHub.open(
        createLogger({ format: resolveFormat(config.log.format), access: false }),
      )
      : undefined;
    let children: Workers | undefined;
    try {
      return await runLbUntilSignal(config, source, {
        reload,
        watch: watch ? source : undefined,
        reusePort: workers > 1,
        workers: hub,
        onStarted: (lb) => {
          if (!hub) return;
          const port = Number(new URL(lb.url).port);
          const log = (m: string, f: Record<string, unknown>) => lb.logger.event("workers", m, f);
          children = startWorkers(workers - 1, workerArgs(args), port, hub.path, log);
        },
        onHup: () => children?.signal("SIGHUP"),
        onShutdown: async (sig) => await children?.stop(sig),
      });
    } finally {
      await hub?.close();
    }
  },
};

/**
 * A worker: no admin listener and no cluster link (the parent has them); it joins the
 * parent's channel, applies the parent's changes when asked, and stops when the parent goes.
 */
async function runWorker(
  config: Config,
  source: string,
  reload: () => Promise<Config>,
  worker: number,
): Promise<number> {
  const own = (c: Config): Config => ({
    ...c,
    admin: { ...c.admin, enabled: false },
    cluster: undefined,
  });
  const reloadOwn = async () => own(await reload());
  const channel = Deno.env.get(CHANNEL_ENV);
  return await runLbUntilSignal(own(config), source, {
    reload: reloadOwn,
    reusePort: true,
    worker: true,
    onStarted: (lb) => {
      if (!channel) return;
      followParent(channel, worker, lb, reloadOwn).then(
        (peer) => peer.done,
        (e) =>
          lb.logger.error(`worker ${worker}: cannot reach the parent: ${(e as Error).message}`),
      ).then(() => Deno.kill(Deno.pid, "SIGTERM"));
    },
  });
}
