import { consistentHash } from "./consistent_hash.ts";
import { fastest } from "./fastest.ts";
import { leastConn } from "./least_conn.ts";
import { maglev } from "./maglev.ts";
import { p2c } from "./p2c.ts";
import { weightedRandom } from "./weighted_random.ts";
import { roundRobin } from "./round_robin.ts";
import type { Strategy, StrategyFactory, StrategyOptions } from "./types.ts";
import { weightedRoundRobin } from "./weighted_round_robin.ts";

/** Name → factory. The names are lb's public API (`--strategy`, `strategy:`). */
export const STRATEGIES: Record<string, StrategyFactory> = {
  "round-robin": () => roundRobin(),
  "weighted-round-robin": () => weightedRoundRobin(),
  "least-conn": () => leastConn(),
  "fastest": (opts) => fastest(opts),
  "p2c": (opts) => p2c(opts),
  "random": () => weightedRandom(),
  "consistent-hash": (opts) => consistentHash(opts),
  "maglev": (opts) => maglev(opts),
};

export const STRATEGY_NAMES = Object.keys(STRATEGIES);

/** Throws a user-facing Error unless `name` is a strategy's name. */
export function checkStrategyName(name: string): StrategyFactory {
  const f = Object.hasOwn(STRATEGIES, name) ? STRATEGIES[name] : undefined;
  if (!f) {
    throw new Error(`unknown strategy "${name}" (choose one of: ${STRATEGY_NAMES.join(", ")})`);
  }
  return f;
}

/** Builds a strategy by name; throws a user-facing Error for an unknown name. */
export function createStrategy(name: string, opts: StrategyOptions = {}): Strategy {
  return checkStrategyName(name)(opts);
}

export type { PickContext, Strategy, StrategyOptions } from "./types.ts";
