/**
 * `lb serve --workers N`: N lb processes share the traffic port with SO_REUSEPORT, and the
 * kernel spreads connections over them. The first process (the parent) owns the admin
 * listener, the state file and the cluster link; the others run without them. They talk
 * over a Unix socket (src/workers/): the parent's metrics, server views and events add the
 * workers' counts, and an admin change is applied by every worker before the API answers.
 * A worker that exits unexpectedly is started again (after 1 s, doubling up to 30 s while it
 * keeps dying); its requests in flight are lost, nobody else's. Each process keeps its own
 * in-flight counts, latency estimates and health results, and balances within itself.
 */
import { existsSync } from "node:fs";
import { CHANNEL_ENV } from "../workers/follower.ts";

export interface Workers {
  /** Passes a signal on to every worker. */
  signal(sig: Deno.Signal): void;
  /** Sends `sig` to every worker and waits for them all to exit (none is restarted). */
  stop(sig: Deno.Signal): Promise<void>;
}

/** The command that runs this same program again: the compiled binary, or deno run. */
function selfCommand(args: string[]): { cmd: string; args: string[] } {
  const exe = Deno.execPath();
  if (!/(^|\/)deno$/.test(exe)) return { cmd: exe, args }; // the compiled ./lb
  const main = new URL("../main.ts", import.meta.url);
  const config = new URL("../../deno.json", import.meta.url);
  const flags = ["run", "-A", ...(existsSync(config) ? ["--config", config.pathname] : [])];
  return { cmd: exe, args: [...flags, main.pathname, ...args] };
}

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;
/** A worker that ran this long before it died is restarted after the first delay again. */
const STABLE_MS = 60_000;

/**
 * Starts `count` workers running `lb serve` with `args` (the parent's own flags, less
 * --workers) on the port the parent is already listening on, joined to the parent's channel
 * at `channel`. `log` reports restarts.
 */
export function startWorkers(
  count: number,
  args: string[],
  port: number,
  channel: string,
  log: (message: string, fields: Record<string, unknown>) => void,
): Workers {
  const s = new Supervisor(args, port, channel, log);
  for (let i = 1; i <= count; i++) s.spawn(i, FIRST_DELAY_MS);
  return s;
}

/** The workers, each started again when it exits unexpectedly. */
class Supervisor implements Workers {
  readonly #children = new Map<number, Deno.ChildProcess>();
  readonly #exits: Promise<unknown>[] = [];
  readonly #restarts = new Set<ReturnType<typeof setTimeout>>();
  #stopping = false;

  constructor(
    readonly args: string[],
    readonly port: number,
    readonly channel: string,
    readonly log: (message: string, fields: Record<string, unknown>) => void,
  ) {}

  /** Starts worker `i`; should it die, it starts again after `delay` ms. */
  spawn(i: number, delay: number): void {
    const { args, port, channel } = this;
    const self = selfCommand(["serve", ...args, "--port", String(port), "--worker", String(i)]);
    const child = new Deno.Command(self.cmd, {
      args: self.args,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
      env: { [CHANNEL_ENV]: channel },
    }).spawn();
    this.#children.set(i, child);
    const started = Date.now();
    this.#exits.push(child.status.then((s) => this.#exited(i, child, s, started, delay)));
  }

  /** Logs an unexpected exit and schedules the restart (the delay doubles, up to 30 s). */
  #exited(
    i: number,
    child: Deno.ChildProcess,
    s: Deno.CommandStatus,
    started: number,
    delay: number,
  ) {
    if (this.#stopping) return;
    const next = Date.now() - started > STABLE_MS ? FIRST_DELAY_MS : delay;
    const how = s.signal ? `was killed by ${s.signal}` : `exited with ${s.code}`;
    this.log(`worker ${i} (pid ${child.pid}) ${how}; starting it again in ${next / 1000}s`, {
      worker: i,
      pid: child.pid,
      code: s.code,
      signal: s.signal,
    });
    const timer = setTimeout(() => {
      this.#restarts.delete(timer);
      if (!this.#stopping) this.spawn(i, Math.min(next * 2, MAX_DELAY_MS));
    }, next);
    this.#restarts.add(timer);
  }

  signal(sig: Deno.Signal): void {
    for (const c of this.#children.values()) {
      try {
        c.kill(sig);
      } catch {
        // already exited
      }
    }
  }

  async stop(sig: Deno.Signal): Promise<void> {
    this.#stopping = true;
    for (const t of this.#restarts) clearTimeout(t);
    this.signal(sig);
    await Promise.all([...this.#children.values()].map((c) => c.status));
    await Promise.all(this.#exits);
  }
}

/** The parent's flags for its workers: everything but --workers N / --workers=N and --port. */
export function workerArgs(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--workers" || a === "--port") {
      i++;
      continue;
    }
    if (a.startsWith("--workers=") || a.startsWith("--port=")) continue;
    out.push(a);
  }
  return out;
}
