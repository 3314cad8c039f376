import { startDemoBackends } from "../../backends/demo.ts";
import { backendSchema } from "../config/backend.ts";
import { BUILT_IN, ConfigError, DEFAULT_CONFIG_YAML, parseConfig } from "../config/load.ts";
import { applyOverrides, type ConfigOverrides } from "../config/overrides.ts";
import type { Config } from "../config/schema.ts";
import {
  type Command,
  intFlag,
  logFormatFlag,
  noPositionals,
  numberListFlag,
  parseFlags,
  UsageError,
} from "./_flags.ts";
import { runLbUntilSignal } from "./_run.ts";

const USAGE = `Usage: lb demo [flags]

Starts three demo backends (127.0.0.1:9001-9003; --backend-port moves them) and the
balancer in front of them (127.0.0.1:8000, admin 127.0.0.1:8001) on the built-in
default config.
Ctrl-C stops both. Then try: curl localhost:8000/

Flags:
  --strategy NAME       balancing strategy (default round-robin)
  --latency MS[,MS…]    demo backends' latency, one value or one per backend
  --fail-rate P[,P…]    demo backends' failure probability (0-1)
  --log-format F        json or text
  --port N              traffic port (default 8000; 0 = any free port)
  --admin-port N        admin port (default 8001; 0 = any free port)
  --backend-port FIRST  port of the first demo backend (default 9001; 0 = any free ports)
  -h, --help            show this help

Example:
  lb demo --strategy fastest --latency 5,50,200
`;

export const demoCommand: Command = {
  name: "demo",
  summary: "run three demo backends and the balancer together",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags(args, {
      strategy: { type: "string" },
      latency: { type: "string" },
      "fail-rate": { type: "string" },
      "log-format": { type: "string" },
      port: { type: "string" },
      "admin-port": { type: "string" },
      "backend-port": { type: "string" },
    }, "demo");
    noPositionals(positionals, "demo");
    const latency = numberListFlag(values.latency, "--latency", "demo", 0, 600_000) ?? [0];
    const failRate = numberListFlag(values["fail-rate"], "--fail-rate", "demo", 0, 1) ?? [0];
    for (const [flag, list] of [["--latency", latency], ["--fail-rate", failRate]] as const) {
      if (list.length !== 1 && list.length !== 3) {
        throw new UsageError(`${flag} takes 1 or 3 values`, "demo");
      }
    }
    const config = demoConfig({
      strategy: values.strategy,
      logFormat: logFormatFlag(values["log-format"], "demo"),
      port: intFlag(values.port, "--port", "demo", 0, 65535),
      adminPort: intFlag(values["admin-port"], "--admin-port", "demo", 0, 65535),
    });
    const port = intFlag(values["backend-port"], "--backend-port", "demo", 0, 65533) ?? 9001;
    const backends = await startDemoBackends({
      count: 3,
      host: "127.0.0.1",
      port,
      latency,
      failRate,
    });
    for (const b of backends) console.log(`${b.name} listening on ${b.url}`);
    try {
      // The balancer goes to the ports the backends got (--backend-port, or any with 0).
      const withPorts = {
        ...config,
        backends: backends.map((b) => backendSchema.parse({ url: b.url, name: b.name })),
      };
      // The demo starts the same every time: dashboard changes are not written to a state file.
      return await runLbUntilSignal(withPorts, BUILT_IN, { stateFile: false });
    } finally {
      await Promise.all(backends.map((b) => b.close()));
    }
  },
};

/** The built-in default config with the demo's flags over it. */
function demoConfig(overrides: ConfigOverrides): Config {
  try {
    return applyOverrides(parseConfig(DEFAULT_CONFIG_YAML, BUILT_IN), overrides);
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.problems.join("; "), "demo");
    throw e;
  }
}
