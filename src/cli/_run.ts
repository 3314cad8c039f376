/**
 * Running one lb in the foreground until SIGINT or SIGTERM, with SIGHUP and `--watch`
 * reloads: shared by `lb serve` (and its workers) and `lb demo`.
 */
import type { Config } from "../config/schema.ts";
import { watchFile } from "../control/watch.ts";
import { type Lb, startLb } from "../lb.ts";
import { createLogger, type Logger, resolveFormat } from "../log.ts";
import { shadowWarnings, sharedLimitWarnings } from "./check.ts";
import { withTlsPaths } from "../config/tls.ts";
import type { WorkerTotals } from "../workers/hub.ts";

/** How `runLbUntilSignal` reloads (serve passes these; demo does not reload). */
export interface RunOptions {
  /** Loads the config again for SIGHUP and --watch; without it SIGHUP is ignored. */
  reload?: () => Promise<Config>;
  /** Reload when this file changes. */
  watch?: string;
  /** `false`: keep API changes in memory only (the demo); default: the state file. */
  stateFile?: false;
  /** Share the traffic port with other lb processes (`--workers`). */
  reusePort?: boolean;
  /** Runs once lb listens (the `--workers` parent starts its children here). */
  onStarted?: (lb: Lb) => void;
  /** Runs on SIGHUP besides the reload (the parent forwards it to its workers). */
  onHup?: () => void;
  /** Stops the workers after this process has stopped accepting. */
  onShutdown?: (signal: Deno.Signal) => Promise<void>;
  /** A --workers worker: it reads its parent's state file, never writes it. */
  worker?: boolean;
  /** A --workers parent: its other processes (their counts, and changes reach them). */
  workers?: WorkerTotals;
}

/**
 * Runs lb until SIGINT or SIGTERM; then drains in-flight requests and resolves 0.
 * SIGHUP (and, with `watch`, a change to the config file) reloads the config.
 */
export async function runLbUntilSignal(
  config: Config,
  source: string,
  run: RunOptions = {},
): Promise<number> {
  const logger = createLogger({
    format: resolveFormat(config.log.format),
    access: config.log.access,
  });
  const lb = startLb({
    config,
    configSource: source,
    logger,
    stateFile: run.stateFile,
    followStateFile: run.worker,
    reusePort: run.reusePort,
    workers: run.workers,
  });
  // Signals are handled before lb says it listens: whoever started it may stop or reload it
  // as soon as it reads the listen line, while `ready` may still be writing the state file.
  const signalled = stopSignal();
  const stopReloads = followReloads(lb, run, logger);
  await lb.ready;
  logListening(lb, source, logger);
  if (!run.worker) logWarnings(lb, logger); // a worker's parent has said them
  run.onStarted?.(lb);
  const signal = await signalled;
  stopReloads();
  logger.event(
    "shutdown",
    `${signal}: finishing in-flight requests (up to ${config.shutdownTimeout}ms)`,
  );
  const stopping = lb.shutdown();
  await run.onShutdown?.(signal);
  const inTime = await stopping;
  logger.event(
    "shutdown",
    inTime ? "stopped" : "stopped; some requests were cut at the shutdown timeout",
  );
  return 0;
}

/** Reloads on SIGHUP and on changes to the watched files; returns what stops them. */
function followReloads(lb: Lb, run: RunOptions, logger: Logger): () => void {
  const reload = run.reload;
  const onHup = reload || run.onHup
    ? () => {
      run.onHup?.();
      if (reload) void lb.reload(reload, "SIGHUP");
    }
    : undefined;
  if (onHup) Deno.addSignalListener("SIGHUP", onHup);
  const watchers: { close(): void }[] = [];
  if (reload && run.watch) {
    // The config file, and the certificate files it names (certbot and the like replace them).
    const config = withTlsPaths(lb.config, run.watch);
    const { tls } = config.listen;
    const files = [run.watch, tls?.cert, tls?.key, config.admin.tls?.cert, config.admin.tls?.key]
      .filter((f): f is string => f !== undefined);
    for (const file of new Set(files)) {
      watchers.push(watchFile(file, () => void lb.reload(reload, `${file} changed`)));
    }
    logger.event("watch", `reloading when ${files.join(", ")} change`, { files });
  }
  return () => {
    if (onHup) Deno.removeSignalListener("SIGHUP", onHup);
    for (const w of watchers) w.close();
  };
}

/** The first SIGINT or SIGTERM. */
function stopSignal(): Promise<Deno.Signal> {
  return new Promise((resolve) => {
    const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
      const h = () => {
        for (const [s, fn] of handlers) Deno.removeSignalListener(s, fn);
        resolve(sig);
      };
      Deno.addSignalListener(sig, h);
      return [sig, h] as const;
    });
  });
}

/** Routes that can never match, and shared rate limits without a cluster to share through. */
function logWarnings(lb: Lb, logger: Logger): void {
  const routes = lb.pools.router.routes.map((r) => r.config);
  for (const w of [...shadowWarnings(routes), ...sharedLimitWarnings(lb.config, routes)]) {
    logger.event("config", `warning: ${w}`);
  }
}

/** One line per listener with its URL (tests and scripts read them), the traffic one first. */
function logListening(lb: Lb, source: string, logger: Logger): void {
  const pools = lb.pools.list.map((p) =>
    `${p.name === "default" ? "" : `${p.name}: `}${p.balancer.strategy.name}, ` +
    `${p.servers.servers.length} backends`
  );
  const routes = lb.pools.router.routes.length;
  const what = `${pools.join("; ")}${lb.pools.size > 1 ? `; ${routes} routes` : ""}`;
  const url = lb.url || "(HTTPS once the ACME certificate is issued)";
  logger.event("listen", `lb traffic listening on ${url} (${what}, config: ${source})`, {
    listener: "traffic",
    url: lb.url,
  });
  if (lb.redirectUrl) {
    logger.event("listen", `lb redirecting ${lb.redirectUrl} to https`, {
      listener: "redirect",
      url: lb.redirectUrl,
    });
  }
  if (lb.adminUrl) {
    logger.event("listen", `lb admin listening on ${lb.adminUrl}`, {
      listener: "admin",
      url: lb.adminUrl,
    });
  }
}
