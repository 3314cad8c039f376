/**
 * Members: real `lb serve` processes register with heartbeat keys; /api/cluster lists them
 * with version, uptime and request rate; one killed with SIGKILL disappears after its TTL.
 * An instance started while Redis is down serves with its state file and joins later.
 */
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { startRedis } from "../_redis.ts";
import { startLbProcess } from "../_serve.ts";
import { call, until } from "../_stack.ts";
import { lb } from "../cli/_cli.ts";

function yaml(redis: string, backend: string, instance: string): string {
  return `backends:
  - { url: "${backend}", name: only }
cluster: { redis: "${redis}", name: m, instance: ${instance}, heartbeat: 200ms, memberTtl: 1s }`;
}

Deno.test("members: listed with version, uptime and rate; a killed one disappears after its TTL", async () => {
  const redis = await startRedis();
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const one = await startLbProcess(yaml(redis.url, backend.url, "one"));
  const two = await startLbProcess(yaml(redis.url, backend.url, "two"));
  try {
    for (let i = 0; i < 30; i++) await (await fetch(two.url + "/")).body?.cancel();
    // two's key carries its rate over the last heartbeat and its count: wait for both to
    // have shown (a beat may fall in the middle of the 30 requests).
    let sawRate = false;
    const listed = await until(
      async () => {
        const r = await call(one.admin, "GET", "/api/cluster");
        const m = r.json.members as { id: string; requestRate: number; requests: number }[];
        const two = m.find((x) => x.id === "two");
        sawRate ||= (two?.requestRate ?? 0) > 0;
        return m.length === 2 && sawRate && two!.requests === 30 && r.json;
      },
      "both members, two with a request rate and its 30 requests",
      10_000,
    );
    assert.deepEqual(listed.members.map((m: { id: string }) => m.id), ["one", "two"]);
    const me = listed.members.find((m: { self: boolean }) => m.self);
    assert.equal(me.id, "one");
    assert.match(me.version, /^\d+\.\d+\.\d+/);
    assert.ok(me.uptimeSeconds >= 0 && me.pid > 0 && me.url.startsWith("http://127.0.0.1:"));
    assert.equal(listed.members.find((m: { id: string }) => m.id === "two").requests, 30);
    two.kill("SIGKILL");
    const t0 = Date.now();
    await until(
      async () => {
        const r = await call(one.admin, "GET", "/api/cluster");
        return r.json.members.length === 1;
      },
      "the killed member to disappear",
      10_000,
    );
    console.log(`a SIGKILLed member left the list after ${Date.now() - t0} ms (TTL 1 s)`);
    const metrics = await (await fetch(`${one.admin}/metrics`)).text();
    assert.match(metrics, /^lb_cluster_members 1$/m);
  } finally {
    await two.stop();
    await one.close();
    await backend.close();
    await redis.close();
  }
});

Deno.test("an instance started while Redis is down serves with its state file, then joins", async () => {
  const redis = await startRedis();
  const backend = await startDemoBackend({ port: 0, index: 1 });
  await redis.stop();
  const dir = await Deno.makeTempDir({ prefix: "lb_cluster_" });
  await Deno.writeTextFile(
    `${dir}/lb.state.json`,
    JSON.stringify({ version: 2, pools: { default: { changed: { only: { weight: 4 } } } } }),
  );
  const one = await startLbProcess(yaml(redis.url, backend.url, "one"), { dir });
  try {
    assert.equal((await (await fetch(one.url + "/")).json()).backend, "backend-1");
    const health = await call(one.admin, "GET", "/healthz");
    assert.equal(health.json.status, "degraded");
    assert.equal((await call(one.admin, "GET", "/api/servers/only")).json.weight, 4);
    await redis.start();
    await until(
      async () => (await call(one.admin, "GET", "/healthz")).json.status === "ok",
      "ok",
      10_000,
    );
    const seeded = await redis.cli("HGET", "lb:{m}:view", '["default","server","only"]');
    assert.match(seeded, /"weight":4/);
  } finally {
    await one.close();
    await Deno.remove(dir, { recursive: true });
    await backend.close();
    await redis.close();
  }
});

Deno.test("a cluster without a Redis URL is refused at start with one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/lb.yaml`,
      "cluster: { name: x }\nadmin: { port: 0 }\nlisten: { port: 0 }\n",
    );
    const r = await lb(["serve", "--config", `${dir}/lb.yaml`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cluster\.redis is not set and LB_CLUSTER_REDIS is empty/);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    await Deno.writeTextFile(`${dir}/lb.yaml`, "cluster: { redis: 'http://x:1' }\n");
    const bad = await lb(["check", "--config", `${dir}/lb.yaml`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /cluster\.redis.*redis:\/\/ or rediss:\/\//);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LB_CLUSTER_REDIS carries a password that lb.yaml need not hold; a wrong one is a clear error", async () => {
  const redis = await startRedis({ password: "s3cret-pass" });
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const body =
    `backends: [{ url: "${backend.url}" }]\ncluster: { name: pw, heartbeat: 200ms, memberTtl: 1s }`;
  Deno.env.set("LB_CLUSTER_REDIS", `redis://:s3cret-pass@127.0.0.1:${redis.port}/0`);
  let one;
  try {
    one = await startLbProcess(body);
    await until(
      async () => (await call(one!.admin, "GET", "/api/cluster")).json.connected,
      "join",
      10_000,
    );
    Deno.env.set("LB_CLUSTER_REDIS", `redis://:wrong@127.0.0.1:${redis.port}/0`);
    const two = await startLbProcess(body);
    try {
      const c = await until(
        async () => {
          const r = await call(two.admin, "GET", "/api/cluster");
          return r.json.lastError && r.json;
        },
        "an error",
        10_000,
      );
      assert.equal(c.connected, false);
      assert.match(c.lastError, /WRONGPASS|invalid username-password/i);
      assert.ok(!JSON.stringify(two.lines).includes("s3cret-pass"), "the password is never logged");
    } finally {
      await two.close();
    }
  } finally {
    Deno.env.delete("LB_CLUSTER_REDIS");
    await one?.close();
    await backend.close();
    await redis.close();
  }
});

Deno.test("lb check shows the cluster without its password, and warns about a shared limit with no cluster", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const routes = `backends: [{ url: "http://127.0.0.1:9001" }]
routes:
  - { name: api, match: { path: /api }, pool: default, rateLimit: { rate: 10, per: 1s, shared: true } }
  - { pool: default }
`;
    await Deno.writeTextFile(`${dir}/lb.yaml`, routes);
    const alone = await lb(["check", "--config", `${dir}/lb.yaml`]);
    assert.equal(alone.code, 0);
    assert.match(alone.stderr, /route 1 \(api\): rateLimit\.shared needs cluster\.redis/);
    assert.match(alone.stdout, /limit 10\/1000ms by ip, shared/);
    await Deno.writeTextFile(
      `${dir}/lb.yaml`,
      routes + `cluster: { redis: "redis://:hunter2hunter2@127.0.0.1:6379/0", name: eu }\n`,
    );
    const joined = await lb(["check", "--config", `${dir}/lb.yaml`]);
    assert.equal(joined.code, 0, joined.stderr);
    assert.equal(joined.stderr, "");
    assert.match(joined.stdout, /redis: redis:\/\/:\(set\)@127\.0\.0\.1:6379\/0/);
    assert.ok(!joined.stdout.includes("hunter2"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
