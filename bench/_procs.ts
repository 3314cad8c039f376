/**
 * The benchmark's subprocesses: every one is registered here when spawned, so that
 * `stopAll()` (at the end, on an error, or on Ctrl-C) leaves nothing running.
 *
 * Each process writes stdout and stderr to its own file in the run's temp dir (through
 * `sh -c 'exec …'`, so the pid is the program's own and /proc/<pid>/status is its memory).
 * A file is what a logging lb writes to in production, and unlike a pipe it costs the
 * benchmark runner no CPU to drain.
 */

// 1,000 client connections plus 1,000 upstream ones need more than the usual 1024 files.
const RAISE_NOFILE = 'ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -H -n)" 2>/dev/null; ';

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  readonly child: Deno.ChildProcess;
  /** Resolves when the process has exited. */
  readonly status: Promise<Deno.CommandStatus>;
  exited: boolean;
}

export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
}

/** Thrown by `spawn` once the benchmark is shutting down (Ctrl-C). */
export class ClosedError extends Error {
  constructor() {
    super("the benchmark is stopping");
  }
}

export class Procs {
  #live = new Set<Proc>();
  #n = 0;
  #closed = false;

  constructor(readonly dir: string) {}

  /** True once `stopAll(true)` ran: no new process may start. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Starts `cmd args…` with output going to `<dir>/<name>.log`. */
  spawn(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
    if (this.#closed) throw new ClosedError();
    const logPath = `${this.dir}/${name}.${++this.#n}.log`;
    const child = new Deno.Command("sh", {
      args: ["-c", RAISE_NOFILE + 'exec "$@" >"$BENCH_PROC_LOG" 2>&1', "sh", cmd, ...args],
      cwd: opts.cwd,
      env: { ...opts.env, BENCH_PROC_LOG: logPath },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const proc: Proc = {
      name,
      pid: child.pid,
      logPath,
      child,
      exited: false,
      status: child.status.then((s) => {
        proc.exited = true;
        this.#live.delete(proc);
        return s;
      }),
    };
    this.#live.add(proc);
    return proc;
  }

  /** Runs to completion (killed by stopAll on Ctrl-C); returns exit status and output. */
  async run(name: string, cmd: string, args: string[], opts: SpawnOptions = {}) {
    const p = this.spawn(name, cmd, args, opts);
    const status = await p.status;
    return { status, output: await readLog(p) };
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(p: Proc, graceMs = 5000): Promise<void> {
    if (p.exited) return;
    signal(p, "SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const killed = new Promise<void>((r) => {
      timer = setTimeout(() => {
        signal(p, "SIGKILL");
        r();
      }, graceMs);
    });
    await Promise.race([p.status, killed]);
    clearTimeout(timer);
    await p.status;
  }

  /** Stops every live process, newest first; with `close`, refuses new ones from then on. */
  async stopAll(graceMs = 3000, close = false): Promise<void> {
    if (close) this.#closed = true;
    const list = [...this.#live].reverse();
    await Promise.all(list.map((p) => this.stop(p, graceMs)));
  }
}

function signal(p: Proc, sig: Deno.Signal) {
  try {
    p.child.kill(sig);
  } catch {
    // Already gone.
  }
}

export async function readLog(p: Proc): Promise<string> {
  try {
    return await Deno.readTextFile(p.logPath);
  } catch {
    return "";
  }
}

/**
 * The line of a process's output that best says what went wrong: the first error line
 * (Deno's `error: …`, lb's `lb: …`, a `…Error: …`), else the last line. ANSI colours removed.
 */
export async function lastLine(p: Proc): Promise<string> {
  // deno-lint-ignore no-control-regex
  const lines = (await readLog(p)).replace(/\x1b\[[0-9;]*m/g, "").split("\n").map((l) => l.trim())
    .filter(Boolean);
  return lines.find((l) => /^(error|lb:|\[ALERT\]|nginx: \[emerg\])|\w*Error:/.test(l)) ??
    lines.at(-1) ?? "(no output)";
}

/** A TCP port that was free a moment ago (the OS's pick). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits until 127.0.0.1:`port` accepts connections. Throws with the process's last output
 * line if it exits first, or after `timeoutMs`.
 */
export async function waitForPort(p: Proc, port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p.exited) throw new Error(`${p.name} exited before listening: ${await lastLine(p)}`);
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${p.name} did not listen on port ${port} within ${timeoutMs} ms`);
}

/** Waits until `p`'s output matches `re` `count` times; returns the matches. */
export async function waitForOutput(
  p: Proc,
  re: RegExp,
  count: number,
  timeoutMs = 20_000,
): Promise<RegExpMatchArray[]> {
  const deadline = Date.now() + timeoutMs;
  const g = new RegExp(re.source, re.flags.includes("g") ? re.flags : re.flags + "g");
  while (Date.now() < deadline) {
    const found = [...(await readLog(p)).matchAll(g)];
    if (found.length >= count) return found;
    if (p.exited) throw new Error(`${p.name} exited early: ${await lastLine(p)}`);
    await sleep(50);
  }
  throw new Error(`${p.name} did not start within ${timeoutMs} ms: ${await lastLine(p)}`);
}

/** VmRSS and VmHWM (peak) of a process, in bytes; undefined once it is gone. */
export function memoryOf(pid: number): { rss: number; hwm: number } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/** Samples a process's VmRSS every `everyMs` until stopped; reports the highest seen. */
export function sampleRss(
  pid: number,
  everyMs = 50,
): { stop(): { peak: number; samples: number } } {
  let peak = memoryOf(pid)?.rss ?? 0;
  let samples = 1;
  const timer = setInterval(() => {
    const m = memoryOf(pid);
    if (!m) return;
    samples++;
    if (m.rss > peak) peak = m.rss;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const m = memoryOf(pid);
      if (m && m.rss > peak) peak = m.rss;
      return { peak, samples };
    },
  };
}

/** Clock ticks per second in /proc's CPU times (USER_HZ: 100 on every Linux lb runs on). */
const USER_HZ = 100;

/**
 * CPU time (user + system, in seconds) used so far by `pid` and every process under it
 * (nginx's worker, lb's --workers), from /proc; undefined once `pid` is gone. Children
 * that exited are counted only once reaped, as the kernel counts them.
 */
export function cpuSecondsOf(pid: number): number | undefined {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  try {
    for (const e of Deno.readDirSync("/proc")) {
      const p = Number(e.name);
      if (!Number.isInteger(p)) continue;
      try {
        const text = Deno.readTextFileSync(`/proc/${p}/stat`);
        // After "pid (comm) ": ppid is field 4; utime and stime are fields 14 and 15.
        const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
        stats.set(p, { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
      } catch {
        // Gone, or not ours to read.
      }
    }
  } catch {
    return undefined;
  }
  if (!stats.has(pid)) return undefined;
  let ticks = 0;
  const tree = new Set([pid]);
  // Parents have lower pids only until pids wrap: repeat until the tree stops growing.
  for (let grew = true; grew;) {
    grew = false;
    for (const [p, s] of stats) {
      if (!tree.has(p) && tree.has(s.ppid)) {
        tree.add(p);
        grew = true;
      }
    }
  }
  for (const p of tree) ticks += stats.get(p)!.ticks;
  return ticks / USER_HZ;
}

/**
 * The soft open-files limit (`ulimit -n`) of this process, from /proc; the processes it
 * spawns get at least that.
 */
export function fdLimit(): number {
  try {
    const m = /Max open files\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/limits"));
    return m ? Number(m[1]) : 1024;
  } catch {
    return 1024;
  }
}
