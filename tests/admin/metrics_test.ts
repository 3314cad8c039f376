/** GET /metrics: Prometheus text with conventional names, read through the admin listener. */
import assert from "node:assert/strict";
import { assertPromtoolClean } from "../_promtool.ts";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { testConfig, until } from "../_stack.ts";
import { ROUTES, startPoolStack } from "../_pools.ts";

async function start(
  count: number,
  extra: Record<string, unknown> = {},
): Promise<{ lb: Lb; backends: DemoBackend[]; close(): Promise<void> }> {
  const backends: DemoBackend[] = [];
  for (let i = 1; i <= count; i++) backends.push(await startDemoBackend({ port: 0, index: i }));
  const lb = startLb({
    logger: createLogger({ format: "json", access: false, write: () => {} }),
    config: testConfig([], {
      backends: backends.map((b) => ({ url: b.url, name: b.name })),
      admin: { enabled: true, host: "127.0.0.1", port: 0 },
      ...extra,
    }),
  });
  return {
    lb,
    backends,
    async close() {
      await lb.shutdown(2000);
      await Promise.all(backends.map((b) => b.close()));
    },
  };
}

async function scrape(lb: Lb): Promise<string> {
  const res = await fetch(lb.adminUrl + "/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  return await res.text();
}

/** Every sample of `text` as its name, labels and value. */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries(
      [...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of one sample, e.g. `lb_requests_total{backend="backend-1",…}`; undefined if absent. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return samples(text).find((s) => s.name === name && hasLabels(s.labels, labels))?.value;
}

/** Whether `got` has every label of `want`. */
function hasLabels(got: Record<string, string>, want: Record<string, string>): boolean {
  return Object.entries(want).every(([k, v]) => got[k] === v);
}

async function hit(lb: Lb, n: number, method = "GET"): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await fetch(lb.url + "/m", { method });
    await res.body?.cancel();
  }
}

Deno.test("/metrics counts requests by backend, method and status class, with a duration histogram in seconds", async () => {
  const st = await start(2);
  try {
    await hit(st.lb, 4);
    await hit(st.lb, 2, "POST");
    st.backends[0].settings.failRate = 1;
    await hit(st.lb, 2); // round-robin: one of these lands on backend-1 and gets its 500
    const text = await scrape(st.lb);
    assert.equal(
      sample(text, "lb_requests_total", { backend: "backend-1", method: "GET", code_class: "2xx" }),
      2,
    );
    assert.equal(
      sample(text, "lb_requests_total", { backend: "backend-2", method: "GET", code_class: "2xx" }),
      3,
    );
    assert.equal(
      sample(text, "lb_requests_total", {
        backend: "backend-1",
        method: "POST",
        code_class: "2xx",
      }),
      1,
    );
    assert.equal(
      sample(text, "lb_requests_total", { backend: "backend-1", method: "GET", code_class: "5xx" }),
      1,
    );
    assert.equal(sample(text, "lb_request_duration_seconds_count", { backend: "backend-1" }), 4);
    assert.equal(
      sample(text, "lb_request_duration_seconds_bucket", { backend: "backend-2", le: "+Inf" }),
      4,
    );
    const sum = sample(text, "lb_request_duration_seconds_sum", { backend: "backend-2" })!;
    assert.ok(sum > 0 && sum < 5, `durations are in seconds, got a sum of ${sum}`);
    assert.equal(sample(text, "lb_upstream_tries_total"), 8);
    assert.equal(sample(text, "lb_retries_total"), 0);
    assert.equal(sample(text, "lb_requests_in_flight"), 0);
    assert.match(text, /# TYPE lb_request_duration_seconds histogram/);
    assert.match(text, /# TYPE lb_requests_total counter/);
    // The API (and so the dashboard's error rate) counts the 500 too.
    const view = await (await fetch(st.lb.adminUrl + "/api/servers/backend-1")).json();
    assert.equal(view.responses5xx, 1);
    assert.equal(view.errors, 0);
  } finally {
    await st.close();
  }
});

Deno.test("/metrics counts tries and retries when a backend fails and another answers", async () => {
  const st = await start(2, { retry: { on: [500], attempts: 2 } });
  try {
    st.backends[0].settings.failRate = 1;
    await hit(st.lb, 4);
    const text = await scrape(st.lb);
    assert.equal(sample(text, "lb_requests_total", { backend: "backend-2", code_class: "2xx" }), 4);
    // Every try on backend-1 failed and was retried once on backend-2.
    const failed = st.lb.pool.get("backend-1")!.requests;
    assert.ok(failed >= 1);
    assert.equal(sample(text, "lb_retries_total"), failed);
    assert.equal(sample(text, "lb_upstream_tries_total"), 4 + failed);
  } finally {
    await st.close();
  }
});

Deno.test("server state, weight and health-check counts are read from the pool when scraped", async () => {
  const st = await start(2, { health: { enabled: true, interval: "50ms", timeout: "500ms" } });
  try {
    st.backends[1].settings.healthy = false;
    st.lb.pool.setAdminState(st.lb.pool.get("backend-1")!, "disabled");
    st.lb.pool.setWeight(st.lb.pool.get("backend-2")!, 4);
    await until(
      () => (st.lb.pool.get("backend-2")!.health.failedTotal ?? 0) >= 3,
      "three failed checks",
    );
    const text = await scrape(st.lb);
    const state = (backend: string, s: string) =>
      sample(text, "lb_server_state", { backend, state: s });
    assert.equal(state("backend-1", "disabled"), 1);
    assert.equal(state("backend-1", "healthy"), 0);
    assert.equal(state("backend-2", "unhealthy"), 1);
    assert.equal(state("backend-2", "healthy"), 0);
    assert.equal(sample(text, "lb_server_weight", { backend: "backend-2" }), 4);
    assert.ok(
      sample(text, "lb_health_checks_total", { backend: "backend-2", result: "fail" })! >= 3,
    );
    assert.ok(
      sample(text, "lb_health_checks_total", { backend: "backend-1", result: "pass" })! >= 1,
    );
    assert.equal(sample(text, "lb_ejections_total", { backend: "backend-1" }), 0);
    assert.equal(sample(text, "lb_strategy_info", { strategy: "round-robin" }), 1);
  } finally {
    await st.close();
  }
});

Deno.test("two lbs in one process keep separate metrics", async () => {
  const a = await start(1);
  const b = await start(1);
  try {
    await hit(a.lb, 3);
    await hit(b.lb, 1);
    assert.equal(sample(await scrape(a.lb), "lb_upstream_tries_total"), 3);
    assert.equal(sample(await scrape(b.lb), "lb_upstream_tries_total"), 1);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("process metrics follow open sockets and memory; dropped underscore headers are counted", async () => {
  const s = await start(1);
  const held: Deno.Conn[] = [];
  try {
    const before = await scrape(s.lb);
    assert.ok(sample(before, "process_resident_memory_bytes")! > 10e6);
    assert.ok(sample(before, "process_max_fds")! > 0);
    assert.ok(sample(before, "process_cpu_seconds_total")! > 0);
    const fds = sample(before, "process_open_fds")!;
    // 20 more client connections to lb are 20 more descriptors in lb's process.
    const { port } = new URL(s.lb.url);
    for (let i = 0; i < 20; i++) {
      held.push(await Deno.connect({ hostname: "127.0.0.1", port: +port }));
    }
    await until(
      async () => sample(await scrape(s.lb), "process_open_fds")! >= fds + 20,
      "fds to rise",
    );
    const res = await fetch(s.lb.url + "/u", { headers: { "x_a": "1", "x_b": "2" } });
    await res.body?.cancel();
    await until(
      async () =>
        sample(await scrape(s.lb), "lb_dropped_request_headers_total", { reason: "underscore" }) ===
          2,
      "two dropped headers to be counted",
    );
  } finally {
    for (const c of held) c.close();
    await s.close();
  }
});

Deno.test("promtool check metrics finds no problem in lb's real /metrics output", async () => {
  const st = await start(2, { health: { enabled: true, interval: "50ms" } });
  try {
    await hit(st.lb, 5);
    await until(
      () => st.lb.pool.servers.every((s) => s.health.at > 0),
      "a health check of each server",
    );
    await assertPromtoolClean(await scrape(st.lb));
  } finally {
    await st.close();
  }
});

/** The sum of the samples of `name` whose labels include `labels`. */
function total(text: string, name: string, labels: Record<string, string>): number {
  return samples(text).filter((s) => s.name === name && hasLabels(s.labels, labels))
    .reduce((n, s) => n + s.value, 0);
}

Deno.test("with two pools, /metrics passes promtool, every server series names its pool, requests their pool and route, and an unmatched request counts as none", async () => {
  const limited = {
    name: "limited",
    match: { path: "/limited" },
    pool: "web",
    rateLimit: { rate: 1, per: "1m" },
  };
  const st = await startPoolStack({ web: 2, api: 2 }, {
    routes: [limited, ...ROUTES],
    extra: { health: { enabled: true, interval: "50ms" } },
  });
  try {
    for (let i = 0; i < 3; i++) {
      assert.equal((await st.traffic.get("/api/x")).status, 200);
      assert.equal((await st.traffic.get("/", "web.test")).status, 200);
    }
    assert.equal((await st.traffic.get("/nowhere")).status, 404);
    assert.equal((await st.traffic.get("/limited")).status, 200);
    assert.equal((await st.traffic.get("/limited")).status, 429);
    await until(
      () => st.lb.pools.list.every((p) => p.servers.servers.every((s) => s.health.at > 0)),
      "a health check of each server",
    );
    const text = await scrape(st.lb);
    await assertPromtoolClean(text);

    const requests = (labels: Record<string, string>) => total(text, "lb_requests_total", labels);
    assert.equal(requests({ pool: "api", route: "api", code_class: "2xx" }), 3);
    assert.equal(requests({ pool: "web", route: "web", code_class: "2xx" }), 3);
    assert.equal(requests({ pool: "web", route: "limited", code_class: "2xx" }), 1);
    assert.equal(
      requests({ pool: "web", route: "limited", backend: "none", code_class: "4xx" }),
      1,
    );
    assert.equal(
      requests({ pool: "none", route: "none", backend: "none", method: "GET", code_class: "4xx" }),
      1,
    );
    assert.equal(requests({}), 9);
    assert.equal(total(text, "lb_rate_limited_total", { route: "limited" }), 1);
    assert.equal(
      total(text, "lb_request_duration_seconds_count", { pool: "api", route: "api" }),
      3,
    );

    const all = samples(text);
    const perServer = all.filter((s) =>
      s.name.startsWith("lb_server_") ||
      ["lb_ejections_total", "lb_upstream_errors_total", "lb_health_checks_total"].includes(s.name)
    );
    assert.ok(perServer.length >= 4 * 9, `only ${perServer.length} per-server samples`);
    for (const s of perServer) {
      const want = ["backend-1", "backend-2"].includes(s.labels.backend) ? "web" : "api";
      assert.equal(s.labels.pool, want, `${s.name} ${JSON.stringify(s.labels)}`);
    }
    for (const s of all.filter((s) => /^lb_request(s_total|_duration_seconds)/.test(s.name))) {
      assert.ok(s.labels.pool && s.labels.route, `${s.name} ${JSON.stringify(s.labels)}`);
    }
    assert.equal(
      total(text, "lb_server_state", { pool: "api", backend: "backend-3", state: "healthy" }),
      1,
    );
    assert.equal(total(text, "lb_strategy_info", { pool: "web", strategy: "round-robin" }), 1);
    assert.equal(total(text, "lb_strategy_info", { pool: "api", strategy: "round-robin" }), 1);
  } finally {
    await st.close();
  }
});
