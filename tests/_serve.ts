/**
 * Test helper: a real `lb serve --config FILE` subprocess. The config is written to a temp
 * dir (so the state file, `lb.state.json`, lands beside it), both listeners take a port
 * from the OS, and their URLs are read from the JSON `listen` lines lb prints.
 */
import { fileURLToPath } from "node:url";
import { eachLine, until } from "./_stack.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** A running `lb serve` process. */
export interface LbProcess {
  /** Traffic origin, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** Admin origin. */
  admin: string;
  /** The directory holding `lb.yaml` and `lb.state.json`. */
  dir: string;
  /** `dir/lb.yaml`: write `serveYaml(…)` there and send SIGHUP to reload. */
  configPath: string;
  /** Sends `signal` to lb (SIGHUP reloads its config). */
  kill(signal: Deno.Signal): void;
  /** Every JSON line lb printed so far. */
  lines: Record<string, unknown>[];
  /** SIGTERM, then waits for the exit; resolves to the exit code and stderr. Idempotent. */
  stop(): Promise<{ code: number; stderr: string }>;
  /** Stops lb, throws unless it exited 0, and removes the directory if this helper made it. */
  close(): Promise<void>;
}

/**
 * lb.yaml for a test: both listeners on 127.0.0.1 port 0, JSON logs without access lines,
 * no health checks, then `body`. A top-level key `body` sets itself (`listen:`, `admin:`,
 * `log:`, `health:` at the start of a line) replaces that default.
 */
export function serveYaml(body: string): string {
  const defaults: [string, string][] = [
    ["listen", "{ host: 127.0.0.1, port: 0 }"],
    ["admin", "{ host: 127.0.0.1, port: 0 }"],
    ["log", "{ access: false, format: json }"],
    ["health", "{ enabled: false }"],
  ];
  const head = defaults.filter(([k]) => !new RegExp(`^${k}:`, "m").test(body))
    .map(([k, v]) => `${k}: ${v}`);
  return [...head, body].join("\n") + "\n";
}

/**
 * Writes `serveYaml(body)` to `dir/lb.yaml` (a new temp dir when `dir` is not given) and
 * starts `lb serve` on it; resolves once both listeners are up. Pass the same `dir` again
 * to restart an lb with its state file; `args` are more `lb serve` flags.
 */
export async function startLbProcess(
  body: string,
  opts: { dir?: string; args?: string[] } = {},
): Promise<LbProcess> {
  const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "lb_e2e_" });
  const ownDir = opts.dir === undefined;
  const config = `${dir}/lb.yaml`;
  await Deno.writeTextFile(config, serveYaml(body));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, "serve", "--config", config, ...(opts.args ?? [])],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  const reading = eachLine(child.stdout, (line) => {
    try {
      lines.push(JSON.parse(line));
    } catch {
      lines.push({ text: line });
    }
  });
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let stopped: Promise<{ code: number; stderr: string }> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      if (!exited) child.kill("SIGTERM");
      const s = await status;
      await reading;
      return { code: s.code, stderr: await stderr };
    })();
  const urlOf = (listener: string) =>
    lines.find((l) => l.kind === "listen" && l.listener === listener)?.url as string | undefined;
  try {
    await until(() => exited || (urlOf("traffic") && urlOf("admin")), "lb to listen", 20_000);
    if (exited) throw new Error("lb exited before listening");
  } catch (e) {
    const { stderr } = await stop();
    if (ownDir) await Deno.remove(dir, { recursive: true });
    throw new Error(`${(e as Error).message}: ${stderr}`);
  }
  return {
    url: urlOf("traffic")!,
    admin: urlOf("admin")!,
    dir,
    configPath: config,
    kill: (signal) => child.kill(signal),
    lines,
    stop,
    async close() {
      const { code, stderr } = await stop();
      if (ownDir) await Deno.remove(dir, { recursive: true });
      if (code !== 0) throw new Error(`lb exited ${code}: ${stderr}`);
    },
  };
}
