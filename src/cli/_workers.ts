/**
 * `lb serve --workers N`: N lb processes share the traffic port with SO_REUSEPORT, and the
 * kernel spreads connections over them. The first process (the parent) owns the admin
 * listener and the state file; the others run without one, follow the state file (so admin
 * API changes reach every worker) and reload on the SIGHUP the parent passes on. Each keeps
 * its own in-flight counts, latency estimates and health results.
 */
import { existsSync } from "node:fs";

export interface Workers {
  /** Passes a signal on to every worker. */
  signal(sig: Deno.Signal): void;
  /** Sends `sig` to every worker and waits for them all to exit. */
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

/**
 * Starts `count` workers running `lb serve` with `args` (the parent's own flags, less
 * --workers) on the port the parent is already listening on.
 */
export function startWorkers(count: number, args: string[], port: number): Workers {
  const children: Deno.ChildProcess[] = [];
  for (let i = 1; i <= count; i++) {
    const { cmd, args: full } = selfCommand([
      "serve",
      ...args,
      "--port",
      String(port),
      "--worker",
      String(i),
    ]);
    children.push(
      new Deno.Command(cmd, { args: full, stdin: "null", stdout: "inherit", stderr: "inherit" })
        .spawn(),
    );
  }
  const signal = (sig: Deno.Signal) => {
    for (const c of children) {
      try {
        c.kill(sig);
      } catch {
        // already exited
      }
    }
  };
  return {
    signal,
    async stop(sig) {
      signal(sig);
      await Promise.all(children.map((c) => c.status));
    },
  };
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
