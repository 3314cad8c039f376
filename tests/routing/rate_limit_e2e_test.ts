/**
 * A route's rate limit through a real `lb serve` process in front of a backend that counts
 * what reaches it: the burst, the 429 and its headers, the refill, buckets per header
 * value, the bound on buckets under a flood of keys, and the metrics.
 */
import assert from "node:assert/strict";
import { type LbProcess, startLbProcess } from "../_serve.ts";

/** A backend that counts the requests reaching it, by path and `x-api-key`. */
function countingBackend() {
  const hits = new Map<string, number>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const key = `${new URL(req.url).pathname} ${req.headers.get("x-api-key") ?? ""}`;
    hits.set(key, (hits.get(key) ?? 0) + 1);
    return new Response("ok");
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    /** Requests that reached `path` (with `x-api-key: key`; without the header: key ""). */
    hits: (path: string, key = "") => hits.get(`${path} ${key}`) ?? 0,
    close: () => server.shutdown(),
  };
}

/** One interval of the `burst` route: one request's worth of refill. */
const INTERVAL_MS = 500;

const yaml = (backend: string) => `
pools:
  app:
    backends: [{ url: "${backend}" }]
routes:
  - name: burst
    match: { path: /burst }
    pool: app
    rateLimit: { rate: 1, per: ${INTERVAL_MS}ms, burst: 5 }
  - name: per-key
    match: { path: /keyed }
    pool: app
    rateLimit: { rate: 1, per: 1m, burst: 2, key: "header:X-Api-Key" }
  - name: flood
    match: { path: /flood }
    pool: app
    rateLimit: { rate: 1, per: 1m, burst: 1, key: "header:x-api-key", maxKeys: 1000 }
  - name: open
    pool: app
`;

async function withLimitedLb(
  fn: (lb: LbProcess, backend: ReturnType<typeof countingBackend>) => Promise<void>,
) {
  const backend = countingBackend();
  try {
    const lb = await startLbProcess(yaml(backend.url));
    try {
      await fn(lb, backend);
    } finally {
      await lb.close();
    }
  } finally {
    await backend.close();
  }
}

async function get(lb: LbProcess, path: string, key?: string) {
  const res = await fetch(`${lb.url}${path}`, {
    headers: key === undefined ? {} : { "x-api-key": key },
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}

/** The value of the sample `name{route="route"}` in lb's /metrics (0 when absent). */
async function metric(lb: LbProcess, name: string, route: string): Promise<number> {
  const text = await (await fetch(`${lb.admin}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{route="${route}"} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

Deno.test("a burst passes, then 429 rate_limited with Retry-After and RateLimit headers that never reaches a backend; after the refill time a request passes again", async () => {
  await withLimitedLb(async (lb, backend) => {
    for (let i = 0; i < 5; i++) {
      const r = await get(lb, "/burst");
      assert.equal(r.status, 200, `request ${i + 1} of the burst`);
      assert.equal(r.headers.get("ratelimit-policy"), `"burst";q=5;w=3`);
      assert.match(r.headers.get("ratelimit")!, new RegExp(`^"burst";r=${4 - i};t=\\d+$`));
    }
    assert.equal(backend.hits("/burst"), 5);

    const refused = 3;
    for (let i = 0; i < refused; i++) {
      const r = await get(lb, "/burst");
      assert.equal(r.status, 429);
      const body = JSON.parse(r.text);
      assert.equal(body.error.code, "rate_limited");
      assert.equal(body.error.status, 429);
      const retryAfter = r.headers.get("retry-after")!;
      assert.match(retryAfter, /^\d+$/, "whole seconds");
      assert.ok(Number(retryAfter) >= 1);
      assert.equal(r.headers.get("ratelimit-policy"), `"burst";q=5;w=3`);
      assert.match(r.headers.get("ratelimit")!, /^"burst";r=0;t=\d+$/);
    }
    assert.equal(backend.hits("/burst"), 5, "a refused request never reaches the backend");
    // The limit is the route's: another route takes the same client.
    assert.equal((await get(lb, "/elsewhere")).status, 200);

    // The documented wait: one interval refills one request (plus a little for timers).
    await new Promise((r) => setTimeout(r, INTERVAL_MS + 30));
    assert.equal((await get(lb, "/burst")).status, 200);
    assert.equal(backend.hits("/burst"), 6);

    assert.equal(await metric(lb, "lb_rate_limited_total", "burst"), refused);
    assert.equal(await metric(lb, "lb_rate_limited_total", "open"), 0);
  });
});

Deno.test("key: header:x-api-key keeps a separate bucket for each header value", async () => {
  await withLimitedLb(async (lb, backend) => {
    const statuses = async (key: string | undefined, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await get(lb, "/keyed", key)).status);
      return out;
    };
    assert.deepEqual(await statuses("alice", 3), [200, 200, 429]);
    assert.deepEqual(await statuses("bob", 3), [200, 200, 429], "bob's bucket is his own");
    assert.deepEqual(await statuses("alice", 1), [429], "alice's is still empty");
    assert.deepEqual(await statuses("Alice", 1), [200], "values are compared exactly");
    assert.deepEqual(await statuses(undefined, 3), [200, 200, 429], "no header: one bucket");
    assert.equal(backend.hits("/keyed", "alice"), 2);
    assert.equal(backend.hits("/keyed", "bob"), 2);
    assert.equal(await metric(lb, "lb_rate_limited_total", "per-key"), 4);
    assert.equal(await metric(lb, "lb_rate_limit_keys", "per-key"), 4);
  });
});

Deno.test("a flood of 20,000 distinct keys keeps a route's buckets at maxKeys", async () => {
  await withLimitedLb(async (lb, backend) => {
    const total = 20_000;
    let next = 0;
    const statuses = new Map<number, number>();
    await Promise.all(Array.from({ length: 50 }, async () => {
      while (next < total) {
        const r = await get(lb, "/flood", `key-${next++}`);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      }
    }));
    // Each key is new, so each has a full bucket: every request passes.
    assert.deepEqual([...statuses], [[200, total]]);
    const keys = await metric(lb, "lb_rate_limit_keys", "flood");
    assert.ok(keys > 0 && keys <= 1000, `lb_rate_limit_keys{route="flood"} is ${keys}`);
    // The newest keys are still held (their bucket is empty); the oldest were let go, and
    // an evicted key starts again with a full bucket (fail open).
    assert.equal((await get(lb, "/flood", `key-${total - 1}`)).status, 429);
    assert.equal((await get(lb, "/flood", "key-0")).status, 200);
    assert.equal(backend.hits("/flood", "key-0"), 2);
    assert.equal(await metric(lb, "lb_rate_limited_total", "flood"), 1);
  });
});
