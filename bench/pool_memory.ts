/**
 * Memory per backend: V8's used heap and the process's RSS after building and starting (the
 * health loop's timers included, first checks an hour away) pools of 3 and of 10,000
 * backends in this process, as lb does for its config, alone and with a cluster's health
 * share (each instance keeps an owner and a result record per backend).
 *
 *   deno run -A --v8-flags=--expose-gc bench/pool_memory.ts [--backends 10000] [--strategy round-robin]
 */
import type { Redis } from "ioredis";
import { ClusterHealth } from "../src/cluster/health_share.ts";
import type { ClusterLink } from "../src/cluster/link.ts";
import { validateConfig } from "../src/config/load.ts";
import { resolvePools } from "../src/config/pools.ts";
import { createLogger } from "../src/log.ts";
import { type PoolCluster, PoolRuntime } from "../src/routing/pool_runtime.ts";

const arg = (name: string, fallback: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i === -1 ? fallback : Deno.args[i + 1];
};
const MANY = Number(arg("backends", "10000"));
const STRATEGY = arg("strategy", "round-robin");
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) console.log("(no --v8-flags=--expose-gc: figures without a forced gc are rougher)");

const logger = createLogger({ format: "json", access: false, write: () => {} });

function poolOf(n: number, cluster?: PoolCluster): PoolRuntime[] {
  const backends = Array.from({ length: n }, (_, i) => ({
    url: `http://10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:8080`,
  }));
  const config = validateConfig({
    backends,
    strategy: STRATEGY,
    health: { interval: "1h" },
    admin: { enabled: false },
  });
  return resolvePools(config).map((c) =>
    new PoolRuntime(c, "a-bench-secret-of-16+", undefined, cluster)
  );
}

function measure(): { heap: number; rss: number } {
  for (let i = 0; i < 3; i++) gc?.();
  const m = Deno.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

async function perBackend(label: string, cluster?: PoolCluster): Promise<void> {
  const before = measure();
  const few = poolOf(3, cluster);
  for (const p of few) p.start(logger);
  const small = measure();
  const many = poolOf(MANY, cluster);
  for (const p of many) p.start(logger);
  const large = measure();
  const n = MANY - 3;
  const kb = (b: number) => (b / 1024).toFixed(0);
  console.log(
    `${label}: 3 backends +${kb(small.heap - before.heap)} KiB heap; ${MANY} ` +
      `backends +${((large.heap - small.heap) / 1024 / 1024).toFixed(1)} MiB heap, ` +
      `+${((large.rss - small.rss) / 1024 / 1024).toFixed(1)} MiB RSS: ` +
      `${((large.heap - small.heap) / n).toFixed(0)} B heap, ${
        ((large.rss - small.rss) / n).toFixed(0)
      } B RSS per backend`,
  );
  await Promise.all([...few, ...many].map((p) => p.close()));
}

console.log(
  `strategy ${STRATEGY}; RSS of this process at start ${(measure().rss / 1048576).toFixed(0)} MiB`,
);
await perBackend("alone");

const members = Array.from({ length: 100 }, (_, i) => `m${i}`);
const link: ClusterLink = {
  prefix: "lb:{bench}:",
  self: "m0",
  redis: () => ({ mget: () => Promise.resolve([]) }) as unknown as Redis,
  members: () => members,
  onMembers: () => () => {},
};
const health = new ClusterHealth(link, { logger });
// A share learns a server when the health loop first asks about it: here, all at once.
const primed: PoolCluster = {
  healthShare(pool) {
    const share = health.forPool(pool);
    return {
      start(feed) {
        share.start(feed);
        for (const s of feed.servers()) share.checks(s);
      },
      checks: (s) => share.checks(s),
      publish: (s, r) => share.publish(s, r),
      stop: () => share.stop(),
    };
  },
};
await perBackend("in a cluster of 100 (health share)", primed);
health.close();
