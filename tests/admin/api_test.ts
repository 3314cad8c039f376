/** The admin JSON API through the real admin listener, in front of real demo backends. */
// The tests poke at JSON answers field by field.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { call, testConfig, until } from "../_stack.ts";

interface LogLine {
  type: string;
  kind?: string;
  message: string;
  [k: string]: unknown;
}

interface AdminStack {
  lb: Lb;
  admin: string;
  backends: DemoBackend[];
  log: LogLine[];
  close(): Promise<void>;
}

async function startAdmin(
  count: number,
  backendOpts: { latencyMs?: number } = {},
  extra: Record<string, unknown> = {},
): Promise<AdminStack> {
  const backends: DemoBackend[] = [];
  for (let i = 1; i <= count; i++) {
    backends.push(await startDemoBackend({ port: 0, index: i, ...backendOpts }));
  }
  const log: LogLine[] = [];
  const logger = createLogger({
    format: "json",
    access: false,
    write: (l) => log.push(JSON.parse(l)),
  });
  const config = testConfig([], {
    backends: backends.map((b) => ({ url: b.url, name: b.name })),
    admin: { enabled: true, host: "127.0.0.1", port: 0 },
    ...extra,
  });
  const lb = startLb({ config, logger });
  return {
    lb,
    admin: lb.adminUrl!,
    backends,
    log,
    async close() {
      await lb.shutdown(2000);
      await Promise.all(backends.map((b) => b.close()));
    },
  };
}

/** The servers' configuration as the API shows it (no counters), to compare before and after. */
async function shape(base: string): Promise<string> {
  const { json } = await call(base, "GET", "/api/servers");
  return JSON.stringify(
    json.servers.map((s: any) => [s.id, s.url, s.weight, s.state, s.removing]),
  );
}

async function get(url: string): Promise<Response> {
  const res = await fetch(url);
  await res.body?.cancel();
  return res;
}

Deno.test("GET /api/servers lists every server with its state, counters and last health check", async () => {
  const st = await startAdmin(2);
  try {
    for (let i = 0; i < 4; i++) await get(st.lb.url + "/hello");
    const { status, json } = await call(st.admin, "GET", "/api/servers");
    assert.equal(status, 200);
    assert.deepEqual(json.servers.map((s: any) => s.id), ["backend-1", "backend-2"]);
    const s = json.servers[0];
    assert.equal(s.url, st.backends[0].url);
    assert.equal(s.weight, 1);
    assert.equal(s.state, "healthy");
    assert.equal(s.inflight, 0);
    assert.equal(s.requests, 2);
    assert.equal(s.errors, 0);
    assert.equal(typeof s.latencyEwmaMs, "number");
    assert.ok(s.latencyEwmaMs > 0);
    assert.deepEqual(s.lastHealth, { ok: null, at: null, detail: null });
    const one = await call(st.admin, "GET", "/api/servers/backend-2");
    assert.equal(one.json.id, "backend-2");
  } finally {
    await st.close();
  }
});

Deno.test("POST /api/servers adds a server that takes traffic on the next request", async () => {
  const st = await startAdmin(1);
  const extra = await startDemoBackend({ port: 0, index: 7 });
  try {
    const r = await call(st.admin, "POST", "/api/servers", {
      url: extra.url,
      name: "extra",
      weight: 2,
    });
    assert.equal(r.status, 201);
    assert.equal(r.headers.get("location"), "/api/servers/extra");
    assert.equal(r.json.id, "extra");
    assert.equal(r.json.url, extra.url);
    assert.equal(r.json.weight, 2);
    assert.equal(r.json.state, "healthy");
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await get(st.lb.url + "/");
      seen.add(res.headers.get("x-backend")!);
    }
    assert.ok(seen.has("backend-7"), `the new server got no traffic: ${[...seen]}`);
    const line = st.log.find((l) => l.kind === "admin" && l.action === "add");
    assert.ok(line, "no admin event line for the add");
    assert.equal(line.who, "127.0.0.1");
    assert.equal(line.server, "extra");
  } finally {
    await st.close();
    await extra.close();
  }
});

Deno.test("POST /api/servers answers 400 naming the field for a bad url or weight, 409 for a duplicate", async () => {
  const st = await startAdmin(2);
  try {
    const before = await shape(st.admin);
    const badUrl = await call(st.admin, "POST", "/api/servers", { url: "ftp://10.0.0.1:21" });
    assert.equal(badUrl.status, 400);
    assert.match(badUrl.json.error.fields.url, /http:\/\//);
    assert.match(badUrl.json.error.message, /^url: /);
    const notUrl = await call(st.admin, "POST", "/api/servers", { url: "not a url" });
    assert.equal(notUrl.status, 400);
    assert.ok(notUrl.json.error.fields.url);
    const withPath = await call(st.admin, "POST", "/api/servers", {
      url: "http://10.0.0.1:80/app",
    });
    assert.equal(withPath.status, 400);
    for (const weight of [0, 1001, 1.5, "3"]) {
      const r = await call(st.admin, "POST", "/api/servers", {
        url: "http://10.0.0.9:80",
        weight,
      });
      assert.equal(r.status, 400, `weight ${weight}`);
      assert.ok(r.json.error.fields.weight, `weight ${weight}: ${JSON.stringify(r.json)}`);
    }
    const noUrl = await call(st.admin, "POST", "/api/servers", { weight: 2 });
    assert.equal(noUrl.status, 400);
    assert.equal(noUrl.json.error.fields.url, "is required");
    const dupUrl = await call(st.admin, "POST", "/api/servers", { url: st.backends[0].url });
    assert.equal(dupUrl.status, 409);
    assert.match(dupUrl.json.error.message, /exists/);
    const dupName = await call(st.admin, "POST", "/api/servers", {
      url: "http://10.0.0.9:80",
      name: "backend-2",
    });
    assert.equal(dupName.status, 409);
    assert.equal(await shape(st.admin), before);
  } finally {
    await st.close();
  }
});

Deno.test("malformed JSON, wrong types, unknown fields, wrong content types and oversized bodies are refused and change nothing", async () => {
  const st = await startAdmin(2);
  try {
    const before = await shape(st.admin);
    const strategyBefore = (await call(st.admin, "GET", "/api/strategy")).json.name;
    const cases: [string, string, unknown, Record<string, string>, number, RegExp][] = [
      ["POST", "/api/servers", '{"url": "http://10.0.0.9:80",', {}, 400, /malformed JSON/],
      ["POST", "/api/servers", "", {}, 400, /empty/],
      ["POST", "/api/servers", "[1,2]", {}, 400, /JSON object/],
      ["POST", "/api/servers", { url: 5 }, {}, 400, /url: must be a string/],
      [
        "POST",
        "/api/servers",
        { url: "http://10.0.0.9:80", admin: true },
        {},
        400,
        /admin: unknown field/,
      ],
      ["PATCH", "/api/servers/backend-1", { weight: "5" }, {}, 400, /weight: must be a number/],
      [
        "PATCH",
        "/api/servers/backend-1",
        { state: "off" },
        {},
        400,
        /state: must be draining, disabled or enabled/,
      ],
      [
        "PATCH",
        "/api/servers/backend-1",
        { weight: 3, colour: "red" },
        {},
        400,
        /colour: unknown field/,
      ],
      ["PATCH", "/api/servers/backend-1", {}, {}, 400, /give weight, state or both/],
      ["PUT", "/api/strategy", { name: "fastest-ever" }, {}, 400, /name: must be one of/],
      ["PUT", "/api/strategy", { name: "maglev", balanceFactor: 0.5 }, {}, 400, /balanceFactor/],
      ["PUT", "/api/strategy", { name: "p2c", key: "cookie:" }, {}, 400, /key/],
      [
        "POST",
        "/api/servers",
        { url: "http://10.0.0.9:80" },
        { "content-type": "text/plain" },
        415,
        /content-type: application\/json/,
      ],
      [
        "PATCH",
        "/api/servers/backend-1",
        { weight: 5 },
        { "content-type": "application/x-www-form-urlencoded" },
        415,
        /JSON/,
      ],
      [
        "POST",
        "/api/servers",
        JSON.stringify({ url: "http://10.0.0.9:80", name: "x".repeat(70_000) }),
        {},
        413,
        /at most 65536 bytes/,
      ],
    ];
    for (const [method, path, body, headers, status, message] of cases) {
      const r = await call(st.admin, method, path, body, headers);
      assert.equal(
        r.status,
        status,
        `${method} ${path} ${String(JSON.stringify(body)).slice(0, 60)}`,
      );
      assert.equal(r.json.error.status, status);
      assert.match(r.json.error.message, message);
    }
    // A chunked body with no Content-Length is counted as it arrives.
    const big = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new Uint8Array(10_000).fill(32));
        c.close();
      },
    });
    const res = await fetch(st.admin + "/api/servers", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: big,
    });
    assert.equal(res.status, 413);
    await res.body?.cancel();
    assert.equal(await shape(st.admin), before);
    assert.equal((await call(st.admin, "GET", "/api/strategy")).json.name, strategyBefore);
    assert.equal(st.log.filter((l) => l.kind === "admin").length, 0);
  } finally {
    await st.close();
  }
});

Deno.test("PATCH changes a server's weight and admin state; an unknown id is 404", async () => {
  const st = await startAdmin(2);
  try {
    const w = await call(st.admin, "PATCH", "/api/servers/backend-1", { weight: 5 });
    assert.equal(w.status, 200);
    assert.equal(w.json.weight, 5);
    assert.equal(st.lb.pool.get("backend-1")!.weight, 5);

    const d = await call(st.admin, "PATCH", "/api/servers/backend-1", { state: "disabled" });
    assert.equal(d.status, 200);
    assert.equal(d.json.state, "disabled");
    for (let i = 0; i < 6; i++) {
      const res = await get(st.lb.url + "/");
      assert.equal(res.headers.get("x-backend"), "backend-2");
    }
    const dr = await call(st.admin, "PATCH", "/api/servers/backend-1", { state: "draining" });
    assert.equal(dr.json.state, "draining");
    const e = await call(st.admin, "PATCH", "/api/servers/backend-1", { state: "enabled" });
    assert.equal(e.json.state, "healthy");
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add((await get(st.lb.url + "/")).headers.get("x-backend")!);
    assert.ok(seen.has("backend-1"));

    const missing = await call(st.admin, "PATCH", "/api/servers/nope", { weight: 2 });
    assert.equal(missing.status, 404);
    assert.match(missing.json.error.message, /no server with id "nope"/);
    assert.equal((await call(st.admin, "GET", "/api/servers/nope")).status, 404);
    assert.equal((await call(st.admin, "DELETE", "/api/servers/nope")).status, 404);
  } finally {
    await st.close();
  }
});

Deno.test("DELETE drains a server: its in-flight request finishes, then it leaves the pool", async () => {
  const st = await startAdmin(1, { latencyMs: 400 });
  try {
    const slow = fetch(st.lb.url + "/slow");
    await until(() => st.lb.pool.get("backend-1")!.inflight === 1, "the request to be in flight");
    const r = await call(st.admin, "DELETE", "/api/servers/backend-1");
    assert.equal(r.status, 202);
    assert.equal(r.json.state, "draining");
    assert.equal(r.json.removing, true);
    const during = await call(st.admin, "GET", "/api/servers");
    assert.equal(during.json.servers[0].state, "draining");
    const again = await call(st.admin, "DELETE", "/api/servers/backend-1");
    assert.equal(again.status, 202);
    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal((await res.json()).backend, "backend-1");
    await until(() => st.lb.pool.servers.length === 0, "the drained server to be removed");
    assert.equal((await call(st.admin, "GET", "/api/servers")).json.servers.length, 0);
    const removed = st.log.find((l) => l.kind === "admin" && l.action === "removed");
    assert.ok(removed);
  } finally {
    await st.close();
  }
});

Deno.test("PUT /api/strategy switches the strategy live", async () => {
  const st = await startAdmin(3);
  try {
    const g = await call(st.admin, "GET", "/api/strategy");
    assert.equal(g.json.name, "round-robin");
    assert.ok(g.json.available.includes("maglev"));
    const p = await call(st.admin, "PUT", "/api/strategy", {
      name: "consistent-hash",
      balanceFactor: 1.25,
    });
    assert.equal(p.status, 200);
    assert.equal(p.json.name, "consistent-hash");
    assert.equal(p.json.options.balanceFactor, 1.25);
    assert.equal(st.lb.balancer.strategy.name, "consistent-hash");
    // Consistent hashing on the client address: every request from here lands on one server.
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) seen.add((await get(st.lb.url + "/")).headers.get("x-backend")!);
    assert.equal(seen.size, 1);
    const line = st.log.find((l) => l.kind === "admin" && l.action === "strategy");
    assert.equal(line?.to, "consistent-hash");
  } finally {
    await st.close();
  }
});

Deno.test("GET never changes anything, and methods a route does not take are 405", async () => {
  const st = await startAdmin(2);
  try {
    const before = await shape(st.admin);
    assert.equal(
      (await get(st.admin + "/api/servers/backend-1?state=disabled&weight=9")).status,
      200,
    );
    assert.equal((await get(st.admin + "/api/servers?url=http://10.0.0.9:80")).status, 200);
    assert.equal((await get(st.admin + "/api/strategy?name=random")).status, 200);
    const post = await call(st.admin, "POST", "/api/strategy", { name: "random" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, PUT");
    assert.equal((await call(st.admin, "PUT", "/api/servers", {})).status, 405);
    assert.equal((await call(st.admin, "POST", "/api/servers/backend-1", {})).status, 405);
    assert.equal((await call(st.admin, "GET", "/api/nothing")).status, 404);
    assert.equal(await shape(st.admin), before);
    assert.equal(st.lb.balancer.strategy.name, "round-robin");
  } finally {
    await st.close();
  }
});

Deno.test("the traffic port does not serve the admin API: /api goes to a backend like any path", async () => {
  const st = await startAdmin(1);
  try {
    const res = await fetch(st.lb.url + "/api/servers", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ url: "http://10.0.0.9:80" }),
    });
    assert.equal(res.headers.get("x-backend"), "backend-1");
    const body = await res.json();
    assert.equal(body.path, "/api/servers");
    assert.equal(st.lb.pool.servers.length, 1);
  } finally {
    await st.close();
  }
});

Deno.test("PUT /api/strategy switches to consistent hashing on a header, live", async () => {
  const s = await startAdmin(3);
  try {
    const put = await call(s.admin, "PUT", "/api/strategy", {
      name: "consistent-hash",
      key: "header:x-user",
    });
    assert.equal(put.status, 200);
    const backendFor = async (user: string) => {
      const res = await fetch(`${s.lb.url}/who`, { headers: { "x-user": user } });
      return (await res.json()).backend as string;
    };
    const seen = new Set<string>();
    for (let u = 0; u < 30; u++) {
      const first = await backendFor(`user-${u}`);
      assert.equal(await backendFor(`user-${u}`), first, "the same user lands on the same server");
      seen.add(first);
    }
    assert.ok(seen.size >= 2, "different users spread over the servers");
  } finally {
    await s.close();
  }
});

Deno.test("DELETE of an idle server answers removing: true, though it is gone before the answer", async () => {
  const st = await startAdmin(2);
  try {
    const r = await call(st.admin, "DELETE", "/api/servers/backend-2");
    assert.equal(r.status, 202);
    assert.equal(r.json.removing, true);
    await until(() => st.lb.pool.get("backend-2") === undefined, "backend-2 to leave");
  } finally {
    await st.close();
  }
});
