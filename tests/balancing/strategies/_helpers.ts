/** Fake pools and pick contexts for strategy tests: no network, seeded, clock injected. */
import { ServerPool } from "../../../src/balancing/pool.ts";
import type { Server } from "../../../src/balancing/server.ts";
import type { BackendInput } from "../../../src/config/backend.ts";
import { seededRandom } from "../../../src/balancing/strategies/seeded_random.ts";
import type { PickContext, Strategy } from "../../../src/balancing/strategies/types.ts";

/** A fixed "now" for tests that do not move the clock. */
export const NOW = 1_000_000;

/** A pool of `n` healthy servers 10.0.0.1:80, 10.0.0.2:80, … with the given weights. */
export function makePool(
  n: number,
  weights: number[] = [],
  opts: { latencyTau?: number } = {},
): ServerPool {
  const specs: BackendInput[] = Array.from(
    { length: n },
    (_, i) => ({ url: serverUrl(i), weight: weights[i] ?? 1 }),
  );
  return new ServerPool(specs, opts);
}

export function serverUrl(i: number): string {
  const n = i + 1;
  return `http://10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}:80`;
}

/** A pick context at NOW with a seeded generator and a fixed key. */
export function context(over: Partial<PickContext> = {}): PickContext {
  return { now: NOW, random: seededRandom(1), key: () => "client-1", ...over };
}

/** The ids `strategy` picks for `count` requests (nothing begins or ends; state stays put). */
export function pickIds(
  strategy: Strategy,
  servers: readonly Server[],
  ctx: PickContext,
  count: number,
): string[] {
  return Array.from({ length: count }, () => strategy.pick(servers, ctx)?.id ?? "none");
}

/** How many times each id occurs. */
export function tally(ids: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
}

/** Which server each of `keys` maps to. */
export function assignments(
  strategy: Strategy,
  servers: readonly Server[],
  keys: string[],
  over: Partial<PickContext> = {},
): string[] {
  let key = "";
  const ctx = context({ key: () => key, ...over });
  return keys.map((k) => {
    key = k;
    return strategy.pick(servers, ctx)?.id ?? "none";
  });
}

/** `count` distinct request keys shaped like client addresses. */
export function makeKeys(count: number): string[] {
  return Array.from(
    { length: count },
    (_, i) => `192.168.${i >> 8 & 255}.${i & 255}:${40000 + (i >> 16)}`,
  );
}
