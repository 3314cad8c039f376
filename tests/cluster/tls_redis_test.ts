/**
 * `rediss://`: an lb instance joins a cluster whose Redis speaks only TLS, with a private CA
 * given to Deno the usual way (DENO_CERT), and refuses one it cannot verify.
 */
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { makePki } from "../_certs.ts";
import { startRedis } from "../_redis.ts";
import { startLbProcess } from "../_serve.ts";
import { call, until } from "../_stack.ts";

Deno.test("rediss://: a cluster over TLS with a private CA; without the CA the link stays down", async () => {
  const pki = await makePki();
  const cert = await pki.issue("redis", "IP:127.0.0.1");
  const redis = await startRedis({
    tls: { certFile: cert.certFile, keyFile: cert.keyFile, caFile: pki.ca.certFile },
  });
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const body = `backends: [{ url: "${backend.url}" }]
cluster: { redis: "${redis.url}", name: tls, heartbeat: 200ms, memberTtl: 1s }`;
  try {
    assert.match(redis.url, /^rediss:/);
    const untrusted = await startLbProcess(body);
    try {
      const c = await until(
        async () => {
          const r = await call(untrusted.admin, "GET", "/api/cluster");
          return r.json.lastError && r.json;
        },
        "a TLS error",
        10_000,
      );
      assert.equal(c.connected, false);
      assert.match(c.lastError, /certificate|issuer|verify/i);
    } finally {
      await untrusted.close();
    }
    Deno.env.set("DENO_CERT", pki.ca.certFile);
    const trusted = await startLbProcess(body);
    try {
      await until(
        async () => (await call(trusted.admin, "GET", "/api/cluster")).json.connected,
        "the TLS link",
        10_000,
      );
      const change = await call(trusted.admin, "PATCH", `/api/servers/127.0.0.1:${backend.port}`, {
        weight: 3,
      });
      assert.equal(change.status, 200, JSON.stringify(change.json));
      assert.match(await redis.cli("HGETALL", "lb:{tls}:view"), /"weight":3/);
    } finally {
      await trusted.close();
    }
  } finally {
    Deno.env.delete("DENO_CERT");
    await backend.close();
    await redis.close();
    await pki.close();
  }
});
