/** `lb backends`: start demo HTTP servers to put behind lb, until SIGINT or SIGTERM. */
import { describeDemoBackend, MAX_LATENCY_MS, startDemoBackends } from "../../backends/demo.ts";
import {
  type Command,
  intFlag,
  noPositionals,
  numberListFlag,
  parseFlags,
  UsageError,
} from "./_flags.ts";

const NAME = "backends";

const USAGE =
  `Usage: lb backends [--count N] [--port FIRST] [--host H] [--latency MS[,MS…]] [--fail-rate P[,P…]]

Starts N demo HTTP servers on consecutive ports, named backend-1 … backend-N, to put
behind lb. They run until Ctrl-C (SIGINT) or SIGTERM.

Flags:
  --count N             how many servers, 1 to 100 (default 3)
  --port FIRST          port of backend-1; backend-i listens on FIRST+i-1
                        (default 9001; 0 lets the system pick a free port for each)
  --host H              address to listen on (default 127.0.0.1)
  --latency MS[,MS…]    delay before every answer, 0 to ${MAX_LATENCY_MS} ms (default 0)
  --fail-rate P[,P…]    probability 0 to 1 that a request gets a simulated 500 (default 0)
  -h, --help            show this help
  A single --latency or --fail-rate value applies to every server; a comma list gives
  each server its own and must have exactly N values.

What each server answers (every answer has the header x-backend: backend-i):
  GET  /health                          200 {"status":"ok"}, or 503 once marked unhealthy
  POST /_demo                           change this server live with JSON
                                        {"latencyMs"?, "failRate"?, "healthy"?}; GET shows it
  POST /echo                            streams the request body back
  GET  /stream?bytes=N[&chunk=K][&delayMs=D]
                                        N bytes in chunks of K (default 65536), D ms apart
  GET  /sse?events=N&intervalMs=D       N server-sent events, one every D ms
  anything else                         200 JSON: backend, port, method, path, headers

Examples:
  lb backends
  lb backends --count 3 --latency 5,50,200 --fail-rate 0.05
  curl -X POST http://127.0.0.1:9002/_demo -d '{"healthy": false}'`;

/** `lb backends`: resolves 0 once SIGINT or SIGTERM has closed every server. */
export const backendsCommand: Command = {
  name: NAME,
  summary: "start demo HTTP servers to balance across",
  usage: USAGE,
  async run(args: string[]): Promise<number> {
    const { values, positionals } = parseFlags(args, {
      count: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      latency: { type: "string" },
      "fail-rate": { type: "string" },
    }, NAME);
    noPositionals(positionals, NAME);
    const count = intFlag(values.count, "--count", NAME, 1, 100) ?? 3;
    const port = intFlag(values.port, "--port", NAME, 0, 65535) ?? 9001;
    if (port !== 0 && port + count - 1 > 65535) {
      throw new UsageError(
        `--port ${port} leaves no room for ${count} servers below port 65535`,
        NAME,
      );
    }
    const host = values.host ?? "127.0.0.1";
    if (host.trim() === "") throw new UsageError("--host must not be empty", NAME);
    const latency = numberListFlag(values.latency, "--latency", NAME, 0, MAX_LATENCY_MS) ?? [0];
    const failRate = numberListFlag(values["fail-rate"], "--fail-rate", NAME, 0, 1) ?? [0];
    for (const [flag, list] of [["--latency", latency], ["--fail-rate", failRate]] as const) {
      if (list.length !== 1 && list.length !== count) {
        throw new UsageError(
          `${flag} has ${list.length} values but --count is ${count}; give one value, or one per server`,
          NAME,
        );
      }
    }

    const stop = new AbortController();
    const onSignal = () => stop.abort();
    const signals: Deno.Signal[] = Deno.build.os === "windows"
      ? ["SIGINT", "SIGBREAK"]
      : ["SIGINT", "SIGTERM"];
    for (const s of signals) Deno.addSignalListener(s, onSignal);
    try {
      const stopped = new Promise((resolve) =>
        stop.signal.addEventListener("abort", resolve, { once: true })
      );
      let backends;
      try {
        backends = await startDemoBackends({ count, host, port, latency, failRate });
      } catch (e) {
        if ((e as Error).cause instanceof Deno.errors.AddrInUse) {
          throw new Error(
            `${(e as Error).message}; stop what uses it or choose another first port with --port`,
          );
        }
        throw e;
      }
      for (const b of backends) console.log(describeDemoBackend(b));
      await stopped;
      await Promise.all(backends.map((b) => b.close()));
      return 0;
    } finally {
      for (const s of signals) Deno.removeSignalListener(s, onSignal);
    }
  },
};
