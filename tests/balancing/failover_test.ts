import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend, startDemoBackends } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import type { Config } from "../../src/config/schema.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import type { Logger } from "../../src/log.ts";
import { maybeEject } from "../../src/balancing/outlier.ts";
import { stateOf } from "../../src/balancing/availability.ts";
import { ServerPool } from "../../src/balancing/pool.ts";
import { assertEventually, lbConfig, memoryLogger } from "../_stack.ts";

interface Outcome {
  status: number;
  backend: string | null;
  error?: string;
}

async function get(url: string): Promise<Outcome> {
  try {
    const res = await fetch(url);
    const text = await res.text();
    const backend = res.headers.get("x-backend");
    return res.status === 200
      ? { status: 200, backend }
      : { status: res.status, backend, error: text };
  } catch (e) {
    return { status: 0, backend: null, error: (e as Error).message };
  }
}

/** Sends `total` GETs, `concurrency` at a time; `onProgress(n)` runs after each completes. */
async function load(
  url: string,
  total: number,
  concurrency: number,
  onProgress?: (done: number) => void,
): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      out.push(await get(url));
      onProgress?.(out.length);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

function tally(outcomes: Outcome[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const o of outcomes) {
    const k = o.status === 200 ? `200 ${o.backend}` : `${o.status} ${o.error ?? o.backend}`;
    t[k] = (t[k] ?? 0) + 1;
  }
  return t;
}

async function withLb(
  config: Config,
  fn: (lb: Lb, logger: Logger & { lines: string[] }) => Promise<void>,
): Promise<void> {
  const logger = memoryLogger();
  const lb = startLb({ config, logger });
  try {
    await fn(lb, logger);
  } finally {
    await lb.shutdown(2_000);
  }
}

Deno.test("killing one of three backends under load loses no request, and the backend gets traffic again after rise checks once back", async () => {
  const backends = await startDemoBackends({ count: 3, port: 0 });
  let revived: DemoBackend | undefined;
  const interval = 100;
  const rise = 2;
  try {
    await withLb(
      lbConfig(
        backends.map((b) => b.url),
        `health: { interval: ${interval}ms, timeout: 500ms, rise: ${rise}, fall: 2 }`,
      ),
      async (lb) => {
        const victim = backends[1];
        let killed: Promise<void> | undefined;
        const outcomes = await load(`${lb.url}/work`, 2_000, 20, (n) => {
          if (n === 500) killed = victim.close();
        });
        await killed;
        const t = tally(outcomes);
        assert.equal(outcomes.length, 2_000);
        assert.deepEqual(
          outcomes.filter((o) => o.status !== 200),
          [],
          `every request succeeded: ${JSON.stringify(t)}`,
        );
        // The victim did serve before it died, and the survivors carried the rest.
        assert.ok(t["200 backend-2"] >= 100, JSON.stringify(t));
        assert.ok(t["200 backend-1"] + t["200 backend-3"] >= 1_500, JSON.stringify(t));

        const s = lb.pool.servers[1];
        await assertEventually(() => !s.healthy, 3_000, "the dead backend to be marked unhealthy");

        revived = await startDemoBackend({ port: victim.port, index: 2 });
        const back = Date.now();
        // Within rise × interval (+ jitter, check round trips and a noisy machine's slack).
        const bound = rise * interval * 1.1 + 2_000;
        let served = false;
        while (!served) {
          assert.ok(Date.now() - back < bound, `backend-2 got no traffic within ${bound}ms`);
          const o = await get(`${lb.url}/again`);
          assert.equal(o.status, 200);
          served = o.backend === "backend-2";
          if (!served) await new Promise((r) => setTimeout(r, 10));
        }
        assert.equal(stateOf(s, Date.now()), "healthy");
      },
    );
  } finally {
    await Promise.all(backends.map((b) => b.close()));
    await revived?.close();
  }
});

Deno.test("a backend answering 500 to everything is ejected after outlier.consecutive failures and then gets no traffic", async () => {
  const backends = await startDemoBackends({ count: 3, port: 0, failRate: [0, 1, 0] });
  try {
    await withLb(
      lbConfig(
        backends.map((b) => b.url),
        "health: { enabled: false }\noutlier: { on5xx: true, consecutive: 5, baseEjection: 30s }",
      ),
      async (lb, logger) => {
        const outcomes = await load(`${lb.url}/x`, 300, 4);
        const t = tally(outcomes);
        // 500 is not a retryable status by default, so each failure reached the client:
        // consecutive failures, plus at most the requests already in flight.
        const bad = outcomes.filter((o) => o.status === 500).length;
        assert.ok(
          bad >= 5 && bad <= 5 + 4,
          `backend-2 answered ${bad} requests: ${JSON.stringify(t)}`,
        );
        assert.equal(outcomes.filter((o) => o.status === 200).length, 300 - bad);
        const s = lb.pool.servers[1];
        assert.equal(stateOf(s, Date.now()), "ejected");
        assert.equal(s.ejections, 1);
        const events = logger.lines.map((l) => JSON.parse(l)).filter((e) => e.kind === "state");
        assert.equal(events.length, 1);
        assert.equal(events[0].to, "ejected");
        assert.match(events[0].reason, /5 consecutive failures/);
      },
    );
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("with 500 in retry.on, GETs never see a failing backend's 500: they are retried on another server", async () => {
  const backends = await startDemoBackends({ count: 3, port: 0, failRate: [0, 1, 0] });
  try {
    await withLb(
      lbConfig(
        backends.map((b) => b.url),
        "health: { enabled: false }\noutlier: { enabled: false }\nretry: { on: [500, 502, 503, 504] }",
      ),
      async (lb) => {
        const outcomes = await load(`${lb.url}/x`, 60, 1);
        const t = tally(outcomes);
        assert.equal((t["200 backend-1"] ?? 0) + (t["200 backend-3"] ?? 0), 60, JSON.stringify(t));
        // backend-2 was tried (and failed) all along: nothing ejected it.
        assert.ok(lb.pool.servers[1].requests >= 10);
      },
    );
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("an ejected server comes back early only after rise active checks pass since its ejection", async () => {
  const backends = await startDemoBackends({ count: 2, port: 0 });
  try {
    await withLb(
      lbConfig(
        backends.map((b) => b.url),
        "health: { interval: 30ms, rise: 3 }\noutlier: { baseEjection: 60s }",
      ),
      async (lb) => {
        const s = lb.pool.servers[0];
        await assertEventually(() => s.health.successes >= 5, 3_000, "several passing checks");
        let checksSinceEjection = 0;
        const record = lb.pool.recordHealth.bind(lb.pool);
        lb.pool.recordHealth = (...args) => {
          checksSinceEjection++;
          return record(...args);
        };
        lb.pool.eject(s, Date.now() + 60_000, "test");
        assert.equal(stateOf(s, Date.now()), "ejected");
        await assertEventually(
          () => stateOf(s, Date.now()) === "healthy",
          3_000,
          "the early return",
        );
        assert.ok(checksSinceEjection >= 3, `back after ${checksSinceEjection} checks`);
      },
    );
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("a hanging backend answers 504 within the header timeout, naming the server, without blocking other requests", async () => {
  const hang = await startDemoBackend({ port: 0, index: 1, latencyMs: 60_000 });
  const ok = await startDemoBackend({ port: 0, index: 2 });
  try {
    await withLb(
      lbConfig(
        [hang.url, ok.url],
        "health: { enabled: false }\ntimeouts: { header: 300ms }\nretry: { attempts: 1 }",
      ),
      async (lb, logger) => {
        const finished: string[] = [];
        const one = async (i: number) => {
          const t0 = performance.now();
          const res = await fetch(`${lb.url}/r${i}`);
          const body = await res.json();
          finished.push(String(res.status));
          return { status: res.status, body, ms: performance.now() - t0 };
        };
        // Round-robin: even requests go to the hanging server, odd ones to the healthy one.
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => one(i)));
        const timedOut = results.filter((r) => r.status === 504);
        assert.equal(timedOut.length, 5);
        assert.equal(results.filter((r) => r.status === 200).length, 5);
        // Every 200 came back before the first 504: the hanging server held nothing else up.
        assert.deepEqual(finished.slice(0, 5), ["200", "200", "200", "200", "200"]);
        for (const r of timedOut) {
          assert.ok(r.ms >= 290 && r.ms < 10_000, `504 after ${r.ms}ms`);
          assert.equal(r.body.error.code, "gateway_timeout");
          assert.match(r.body.error.message, new RegExp(lb.pool.servers[0].id));
        }
        const errors = logger.lines.map((l) => JSON.parse(l)).filter((e) => e.type === "error");
        assert.equal(errors.length, 5);
        for (const e of errors) assert.equal(e.backend, lb.pool.servers[0].id);
      },
    );
  } finally {
    await hang.close();
    await ok.close();
  }
});

Deno.test("a GET that times out on a hanging backend is retried on another server and succeeds", async () => {
  const hang = await startDemoBackend({ port: 0, index: 1, latencyMs: 60_000 });
  const ok = await startDemoBackend({ port: 0, index: 2 });
  try {
    await withLb(
      lbConfig([hang.url, ok.url], "health: { enabled: false }\ntimeouts: { header: 200ms }"),
      async (lb) => {
        const outcomes = await load(`${lb.url}/x`, 4, 1);
        assert.deepEqual(tally(outcomes), { "200 backend-2": 4 });
      },
    );
  } finally {
    await hang.close();
    await ok.close();
  }
});

Deno.test("timeouts.request bounds the whole request, retries included", async () => {
  const hangs = await startDemoBackends({ count: 3, port: 0, latency: [60_000] });
  try {
    await withLb(
      lbConfig(
        hangs.map((b) => b.url),
        "health: { enabled: false }\ntimeouts: { header: 10s, request: 400ms }",
      ),
      async (lb) => {
        const t0 = performance.now();
        const res = await fetch(`${lb.url}/x`);
        const body = await res.json();
        const ms = performance.now() - t0;
        assert.equal(res.status, 504);
        assert.equal(body.error.code, "gateway_timeout");
        assert.ok(ms < 5_000, `answered after ${ms}ms, not after the 10s header timeout`);
      },
    );
  } finally {
    await Promise.all(hangs.map((b) => b.close()));
  }
});

Deno.test("maxConnections: a full server is skipped, and when every server is full lb answers 503 with Retry-After", async () => {
  const backends = await startDemoBackends({ count: 2, port: 0, latency: [400] });
  try {
    const config = parseConfig(`listen: { port: 0 }
admin: { enabled: false }
log: { access: false }
health: { enabled: false }
backends:
  - { url: ${backends[0].url}, maxConnections: 1 }
  - { url: ${backends[1].url}, maxConnections: 2 }
`);
    await withLb(config, async (lb) => {
      const [a, b] = lb.pool.servers;
      const send = () => fetch(`${lb.url}/x`).then(async (r) => ({ r, body: await r.json() }));
      // Round-robin would alternate a, b, a: the third goes to b because a is full.
      const first = [send()];
      await assertEventually(() => a.inflight === 1, 2_000, "a busy");
      first.push(send());
      await assertEventually(() => b.inflight === 1, 2_000, "b busy");
      first.push(send());
      await assertEventually(() => b.inflight === 2, 2_000, "b at its limit");
      const refused = await send();
      assert.equal(refused.r.status, 503);
      assert.equal(refused.r.headers.get("retry-after"), "1");
      assert.equal(refused.body.error.message, "every available server is at its connection limit");
      const served = await Promise.all(first);
      assert.deepEqual(served.map((x) => [x.r.status, x.body.backend]), [
        [200, "backend-1"],
        [200, "backend-2"],
        [200, "backend-2"],
      ]);
      assert.equal(a.inflight + b.inflight, 0);
    });
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("panic mode: when every server is unhealthy lb still tries them; with panicMode false it answers 503 with Retry-After", async () => {
  const backends = await startDemoBackends({ count: 2, port: 0 });
  try {
    for (const b of backends) b.settings.healthy = false;
    for (const panic of [true, false]) {
      await withLb(
        lbConfig(
          backends.map((b) => b.url),
          `panicMode: ${panic}\nhealth: { interval: 20ms, fall: 2 }`,
        ),
        async (lb) => {
          await assertEventually(
            () => lb.pool.servers.every((s) => !s.healthy),
            3_000,
            "every server unhealthy",
          );
          const res = await fetch(`${lb.url}/x`);
          const body = await res.json();
          if (panic) {
            assert.equal(res.status, 200);
            assert.match(body.backend, /^backend-/);
          } else {
            assert.equal(res.status, 503);
            assert.equal(res.headers.get("retry-after"), "1");
            assert.equal(body.error.code, "no_server");
          }
        },
      );
    }
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("outlier detection never ejects more than maxEjectionPercent of the servers", async () => {
  const backends = await startDemoBackends({ count: 2, port: 0, failRate: [1] });
  try {
    await withLb(
      lbConfig(
        backends.map((b) => b.url),
        "health: { enabled: false }\noutlier: { on5xx: true, consecutive: 3, maxEjectionPercent: 50 }",
      ),
      async (lb) => {
        const outcomes = await load(`${lb.url}/x`, 40, 1);
        assert.equal(outcomes.every((o) => o.status === 500), true);
        const states = lb.pool.servers.map((s) => stateOf(s, Date.now())).sort();
        // One of two may go (50 %); the other keeps serving, failing or not.
        assert.deepEqual(states, ["ejected", "healthy"]);
      },
    );
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("each ejection lasts baseEjection × times ejected, capped at maxEjection", () => {
  const pool = new ServerPool([{ url: "http://127.0.0.1:1" }, { url: "http://127.0.0.1:2" }]);
  const [s] = pool.servers;
  const cfg = lbConfig(
    ["http://127.0.0.1:1"],
    "outlier: { consecutive: 2, baseEjection: 10s, maxEjection: 25s }",
  )
    .outlier;
  const lengths: number[] = [];
  let now = 1_000_000;
  const fail = () => {
    pool.beginRequest(s);
    pool.endRequest(s, false, undefined, now);
  };
  for (let i = 0; i < 4; i++) {
    fail();
    assert.equal(s.consecutiveFailures, 1);
    assert.equal(maybeEject(pool, s, cfg, now), false, "one failure is not enough");
    fail();
    assert.equal(maybeEject(pool, s, cfg, now), true);
    lengths.push(s.ejectedUntil - now);
    assert.equal(maybeEject(pool, s, cfg, now + 1), false, "already ejected");
    now = s.ejectedUntil;
  }
  assert.deepEqual(lengths, [10_000, 20_000, 25_000, 25_000]);
});
