import type { Server } from "../server.ts";

/** What a strategy may know about the request being balanced. */
export interface PickContext {
  /** Current time in ms (injected, so tests control it). */
  now: number;
  /** Uniform random number in [0, 1) (injected, so tests are seeded). */
  random: () => number;
  /**
   * The request's hash key (client ip, path, header, cookie or query value, as configured
   * by `hash.key`), computed only when a hashing strategy asks for it.
   */
  key: () => string;
  /**
   * Servers that must not be picked (already tried for this request). Usually undefined;
   * a retry passes the servers it has tried.
   */
  exclude?: ReadonlySet<Server>;
  /**
   * Panic mode: every server is unavailable, so pick among all of them
   * (still honouring `exclude`).
   */
  panic?: boolean;
}

/**
 * A balancing strategy: picks one server for a request, or undefined when none is eligible.
 *
 * `pick` must be O(1) or O(log n) and must not allocate server lists per request.
 * Strategies that keep tables (rings, Maglev, weights) build them in `rebuild`,
 * which the balancer calls when servers are added or removed or weights change
 * (never when a server merely goes up or down).
 */
export interface Strategy {
  readonly name: string;
  pick(servers: readonly Server[], ctx: PickContext): Server | undefined;
  rebuild?(servers: readonly Server[]): void;
}

/** Options every strategy factory receives (from lb.yaml's `hash:` and `strategyOptions`). */
export interface StrategyOptions {
  hash?: { key?: string; balanceFactor?: number; vnodes?: number; tableSize?: number };
  /** Decay constant for latency estimates (ms). */
  latencyTau?: number;
}

export type StrategyFactory = (opts: StrategyOptions) => Strategy;
