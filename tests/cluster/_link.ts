/**
 * Test helper: a ClusterLink over a real Redis without the cluster core: fixed members (set
 * them with `setMembers`), `redis()` the client while it is ready. Its client fails commands
 * at once while disconnected (`enableOfflineQueue: false`) and reconnects every 50 ms.
 */
import { Redis } from "ioredis";
import type { ClusterLink } from "../../src/cluster/link.ts";

export interface TestLink extends ClusterLink {
  readonly client: Redis;
  setMembers(members: string[]): void;
  /** As if Redis were down for this instance only (`redis()` undefined), or back. */
  cut(down: boolean): void;
  close(): Promise<void>;
}

export function testLink(url: string, self: string, members: string[], name = "t"): TestLink {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => 50,
    lazyConnect: false,
  });
  client.on("error", () => {}); // reconnect attempts while a test has stopped Redis
  let list = [...members].sort();
  let down = false;
  const listeners = new Set<(m: readonly string[]) => void>();
  return {
    prefix: `lb:{${name}}:`,
    self,
    client,
    redis: () => (!down && client.status === "ready" ? client : undefined),
    members: () => list,
    onMembers(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    setMembers(m) {
      list = [...m].sort();
      for (const fn of listeners) fn(list);
    },
    cut(d) {
      down = d;
    },
    async close() {
      client.disconnect();
      await new Promise((r) => setTimeout(r, 0));
    },
  };
}

/** Resolves once the link's client is ready (or throws after 5 s). */
export async function ready(link: TestLink): Promise<void> {
  const end = Date.now() + 5000;
  while (link.client.status !== "ready") {
    if (Date.now() > end) throw new Error(`Redis client still ${link.client.status} after 5 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
