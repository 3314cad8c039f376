/** `lb simulate`: run a strategy against simulated servers in virtual time and print the result. */
import type { z } from "zod";
import { simulate, type SimulateOptions, type SimulateResult } from "../balancing/simulate.ts";
import { checkStrategyName, STRATEGY_NAMES } from "../balancing/strategies/registry.ts";
import { weightSchema } from "../config/backend.ts";
import { hashOptionsSchema } from "../config/strategy.ts";
import {
  type Command,
  intFlag,
  noPositionals,
  numberListFlag,
  parseFlags,
  UsageError,
} from "./_flags.ts";

const NAME = "simulate";

const USAGE = `Usage: lb simulate --strategy NAME [flags]

Runs a strategy against simulated servers in virtual time (no network, done in a
moment) and prints each server's share of the requests and its p50/p99 latency.
Latencies are drawn around each server's mean and grow a little with its load.

Flags:
  --strategy NAME         ${STRATEGY_NAMES.join(", ")}
  --servers N             how many servers (default: one per --latency value, 3)
  --latency MS,MS,...     mean latency per server in ms, one value or one per server
                          (default 5,50,200, repeated when there are more servers)
  --weights W,W,...       weight per server, one value or one per server (default 1)
  --requests N            requests to send (default 10000)
  --concurrency N         requests in flight at once (default 50)
  --seed N                seed for every random draw; same seed, same result (default 1)
  --keys N                distinct request keys, for consistent-hash and maglev (default 1000)
  --skew S                Zipf exponent of key popularity: 0 uniform, 1 a few hot keys (default 0)
  --balance-factor F      bounded load for consistent-hash and maglev, like 1.25 (default 0: off)
  -h, --help              show this help

Examples:
  lb simulate --strategy p2c
  lb simulate --strategy least-conn --servers 5 --latency 20 --concurrency 200
  lb simulate --strategy consistent-hash --skew 1.2 --balance-factor 1.25
`;

/** The `lb simulate` command. */
export const simulateCommand: Command = {
  name: NAME,
  summary: "try a strategy against simulated servers (virtual time, no network)",
  usage: USAGE,
  run(args: string[]): Promise<number> {
    const opts = parseSimulateFlags(args);
    const result = simulate(opts);
    const { requests = 0, concurrency = 0, seed = 0 } = opts;
    console.log(formatResult(result, { requests, concurrency, seed }));
    return Promise.resolve(0);
  },
};

/** The flags as simulation options; a bad one is a UsageError naming it. */
function parseSimulateFlags(args: string[]): SimulateOptions & { strategy: string } {
  const { values, positionals } = parseFlags(args, {
    strategy: { type: "string" },
    servers: { type: "string" },
    latency: { type: "string" },
    weights: { type: "string" },
    requests: { type: "string" },
    concurrency: { type: "string" },
    seed: { type: "string" },
    keys: { type: "string" },
    skew: { type: "string" },
    "balance-factor": { type: "string" },
  }, NAME);
  noPositionals(positionals, NAME);
  const strategy = values.strategy;
  if (strategy === undefined) {
    throw new UsageError(`missing --strategy (choose one of: ${STRATEGY_NAMES.join(", ")})`, NAME);
  }
  usage(() => checkStrategyName(strategy));
  const latency = numberListFlag(values.latency, "--latency", NAME, 0, 600_000);
  const weights = numberListFlag(values.weights, "--weights", NAME, 1, 1000);
  for (const w of weights ?? []) checked(weightSchema, w, "--weights");
  const balanceFactor = single(
    numberListFlag(values["balance-factor"], "--balance-factor", NAME, 0, 100),
    "--balance-factor",
  );
  checked(hashOptionsSchema.shape.balanceFactor, balanceFactor, "--balance-factor");
  const servers = intFlag(values.servers, "--servers", NAME, 1, 1000) ?? latency?.length ?? 3;
  for (const [list, name] of [[latency, "--latency"], [weights, "--weights"]] as const) {
    if (list && list.length !== 1 && list.length !== servers) {
      const got = `got ${list.length}`;
      throw new UsageError(`${name} takes 1 value or one per server (${servers}), ${got}`, NAME);
    }
  }
  return {
    strategy,
    strategyOptions: { hash: { balanceFactor } },
    servers,
    latency,
    weights,
    requests: intFlag(values.requests, "--requests", NAME, 1, 10_000_000) ?? 10_000,
    concurrency: intFlag(values.concurrency, "--concurrency", NAME, 1, 100_000) ?? 50,
    seed: intFlag(values.seed, "--seed", NAME, 0, 2 ** 32 - 1) ?? 1,
    keys: intFlag(values.keys, "--keys", NAME, 1, 1_000_000),
    keySkew: single(numberListFlag(values.skew, "--skew", NAME, 0, 10), "--skew"),
  };
}

/** Runs `check`; the user-facing Error it throws becomes a UsageError. */
function usage(check: () => void): void {
  try {
    check();
  } catch (e) {
    throw new UsageError((e as Error).message, NAME);
  }
}

/** `value` checked by the same rule lb.yaml uses for it (undefined passes). */
function checked(schema: z.ZodTypeAny, value: unknown, flag: string): void {
  if (value === undefined) return;
  const r = schema.safeParse(value);
  if (!r.success) throw new UsageError(`${flag} ${r.error.issues[0].message}; got ${value}`, NAME);
}

function single(list: number[] | undefined, flag: string): number | undefined {
  if (list && list.length !== 1) {
    throw new UsageError(`${flag} takes one number, got ${list.length}`, NAME);
  }
  return list?.[0];
}

/** The table `lb simulate` prints. */
export function formatResult(
  r: SimulateResult,
  run: { requests: number; concurrency: number; seed: number },
): string {
  const ms = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  const rows = [
    ["server", "mean ms", "weight", "requests", "share", "p50 ms", "p99 ms"],
    ...r.servers.map((s) => [
      s.id,
      String(s.meanLatency),
      String(s.weight),
      String(s.requests),
      `${(s.share * 100).toFixed(1)}%`,
      ms(s.p50),
      ms(s.p99),
    ]),
    ["overall", "", "", String(r.overall.requests), "100.0%", ms(r.overall.p50), ms(r.overall.p99)],
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const line = (row: string[]) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ")
      .trimEnd();
  const out = [
    `${r.strategy}: ${r.servers.length} servers, ${run.requests} requests, concurrency ${run.concurrency}, ` +
    `seed ${run.seed}, ${(r.duration / 1000).toFixed(1)} s of virtual time`,
    "",
    line(rows[0]),
    ...rows.slice(1, -1).map(line),
    line(rows[rows.length - 1]),
  ];
  if (r.unserved) out.push("", `${r.unserved} requests found no server`);
  return out.join("\n");
}
