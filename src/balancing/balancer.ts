/**
 * The balancer: the server pool plus the current strategy. Rebuilds the strategy's tables
 * when membership or weights change, and swaps strategies live.
 */
import {
  createStrategy,
  type PickContext,
  type Strategy,
  type StrategyOptions,
} from "./strategies/registry.ts";
import type { ServerPool } from "./pool.ts";
import type { Server } from "./server.ts";

export class Balancer {
  #strategy: Strategy;
  #options: StrategyOptions;
  #unsubscribe: () => void;

  constructor(readonly pool: ServerPool, strategyName: string, options: StrategyOptions = {}) {
    this.#options = options;
    this.#strategy = createStrategy(strategyName, options);
    this.#strategy.rebuild?.(pool.servers);
    this.#unsubscribe = pool.subscribe((e) => {
      if (e.type === "membership") this.#strategy.rebuild?.(pool.servers);
    });
  }

  get strategy(): Strategy {
    return this.#strategy;
  }

  get options(): StrategyOptions {
    return this.#options;
  }

  /** Switches strategy; throws a user-facing Error for an unknown name (and changes nothing). */
  setStrategy(name: string, options: StrategyOptions = this.#options): void {
    const next = createStrategy(name, options);
    next.rebuild?.(this.pool.servers);
    this.#strategy = next;
    this.#options = options;
  }

  pick(ctx: PickContext): Server | undefined {
    return this.#strategy.pick(this.pool.servers, ctx);
  }

  close(): void {
    this.#unsubscribe();
  }
}
