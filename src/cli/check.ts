import YAML from "yaml";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { type Command, noPositionals, parseFlags } from "./_flags.ts";

const USAGE = `Usage: lb check [--config FILE]

Validates the config and prints the effective settings (defaults filled in).
A bad file exits 1 with every problem named by its field path, and for YAML
syntax errors by line and column.

Flags:
  --config FILE   config file (default: ./lb.yaml if present, else built-in defaults)
  -h, --help      show this help
`;

/** The effective config in lb.yaml's own vocabulary (durations as 250ms, sizes in bytes). */
export function effectiveYaml(config: Config): string {
  const ms = (n: number) => `${n}ms`;
  const view = {
    ...config,
    timeouts: Object.fromEntries(Object.entries(config.timeouts).map(([k, v]) => [k, ms(v)])),
    health: {
      ...config.health,
      interval: ms(config.health.interval),
      timeout: ms(config.health.timeout),
      expectStatus: config.health.expectStatus.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`))
        .join(","),
    },
    outlier: {
      ...config.outlier,
      baseEjection: ms(config.outlier.baseEjection),
      maxEjection: ms(config.outlier.maxEjection),
    },
    retry: {
      ...config.retry,
      backoffBase: ms(config.retry.backoffBase),
      backoffMax: ms(config.retry.backoffMax),
    },
    admin: { ...config.admin, token: config.admin.token ? "(set)" : undefined },
    shutdownTimeout: ms(config.shutdownTimeout),
  };
  return YAML.stringify(JSON.parse(JSON.stringify(view)));
}

export const checkCommand: Command = {
  name: "check",
  summary: "validate a config file and print the effective settings",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags(args, { config: { type: "string" } }, "check");
    noPositionals(positionals, "check");
    const { config, source } = await loadConfig(values.config);
    console.log(`# ${source}: OK\n${effectiveYaml(config)}`);
    return 0;
  },
};
