/**
 * The admin API against hostile clients: never reachable through the traffic port, a token
 * that must be right, and no state change from a GET.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import {
  parseHead,
  rawExchange,
  type RecordingBackend,
  startRecordingBackend,
  testYaml,
} from "../_raw.ts";

const TOKEN = "s3cret-admin-token-0123456789";

async function withLb(extra: string, fn: (lb: Lb, be: RecordingBackend) => Promise<void>) {
  const be = startRecordingBackend();
  const lb = startLb({ config: parseConfig(testYaml([be.url], extra)), stateFile: false });
  try {
    await fn(lb, be);
  } finally {
    await lb.shutdown(1000);
    await be.close();
  }
}

const full = (t: string) => {
  const h = parseHead(t);
  return h !== undefined && h.rest.length >= Number(h.headers.get("content-length")?.[0] ?? 0);
};

Deno.test("the admin API is unreachable through the traffic port, whatever the Host or path", async () => {
  await withLb("", async (lb, be) => {
    const adminHost = new URL(lb.adminUrl!).host;
    const attempts = [
      `GET /api/servers HTTP/1.1\r\nHost: ${adminHost}\r\n\r\n`,
      `GET /healthz HTTP/1.1\r\nHost: ${adminHost}\r\n\r\n`,
      `GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n`,
      `GET ${lb.adminUrl}/api/servers HTTP/1.1\r\nHost: ${adminHost}\r\n\r\n`,
      `PATCH /api/servers/x HTTP/1.1\r\nHost: ${adminHost}\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"state":"disabled"}`,
      `DELETE /api/servers/${new URL(be.url).host} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
      `GET /%2e%2e/api/servers HTTP/1.1\r\nHost: ${adminHost}\r\n\r\n`,
    ];
    for (const raw of attempts) {
      const before = be.requestCount();
      const r = await rawExchange(lb.url, raw, { timeoutMs: 2000, until: full });
      const head = parseHead(r.text);
      // The recording backend's "ok", not anything of the admin app's.
      assert.equal(head?.status, 200, `${raw.split("\r\n")[0]}:\n${r.text}`);
      assert.equal(head!.rest, "ok");
      assert.equal(be.requestCount(), before + 1, "the request did not reach the backend");
    }
    assert.equal(lb.pool.servers.length, 1);
    assert.equal(lb.pool.servers[0].enabled, true);
  });
});

Deno.test("with admin.token set, a missing or wrong token gets 401 and the right one is let in", async () => {
  await withLb(`admin: { host: 127.0.0.1, port: 0, token: "${TOKEN}" }`, async (lb) => {
    const call = async (path: string, auth?: string, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      if (auth !== undefined) headers.set("authorization", auth);
      const res = await fetch(`${lb.adminUrl}${path}`, { ...init, headers });
      await res.body?.cancel();
      return res;
    };
    for (const path of ["/api/servers", "/metrics", "/events"]) {
      const none = await call(path);
      assert.equal(none.status, 401, `${path} without a token`);
      assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
      for (
        const wrong of [
          "Bearer wrong",
          `Bearer ${TOKEN}x`,
          `Bearer ${TOKEN.slice(0, -1)}`,
          `Basic ${btoa(`admin:${TOKEN}`)}`,
          TOKEN,
          "Bearer ",
        ]
      ) {
        assert.equal((await call(path, wrong)).status, 401, `${path} with "${wrong}"`);
      }
    }
    assert.equal((await call("/api/servers", `Bearer ${TOKEN}`)).status, 200);
    assert.equal((await call("/metrics", `bearer ${TOKEN}`)).status, 200);
    // A change with a wrong token changes nothing.
    const id = lb.pool.servers[0].id;
    const patch = await call(`/api/servers/${encodeURIComponent(id)}`, "Bearer wrong", {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ state: "disabled" }),
    });
    assert.equal(patch.status, 401);
    assert.equal(lb.pool.servers[0].enabled, true);
  });
});

Deno.test("no GET, HEAD or OPTIONS changes admin state, whatever its path or query", async () => {
  await withLb(`admin: { host: 127.0.0.1, port: 0, token: "${TOKEN}" }`, async (lb) => {
    const id = encodeURIComponent(lb.pool.servers[0].id);
    const snapshot = () =>
      JSON.stringify(lb.pool.servers.map((s) => [s.id, s.enabled, s.draining, s.weight])) +
      lb.balancer.strategy.name;
    const before = snapshot();
    const auth = { authorization: `Bearer ${TOKEN}` };
    const paths = [
      `/api/servers/${id}?state=disabled`,
      `/api/servers/${id}?state=draining&weight=7`,
      `/api/servers?url=http://127.0.0.1:1`,
      `/api/strategy?name=random`,
      `/api/servers/${id}/drain`,
      `/api/servers/${id}/disable`,
    ];
    for (const path of paths) {
      for (const method of ["GET", "HEAD", "OPTIONS"]) {
        const res = await fetch(`${lb.adminUrl}${path}`, { method, headers: auth });
        await res.body?.cancel();
        assert.ok(res.status < 500, `${method} ${path}: ${res.status}`);
      }
    }
    // A change needs a JSON body type too: a form post (what a cross-site form can send) is refused.
    const form = await fetch(`${lb.adminUrl}/api/servers/${id}`, {
      method: "PATCH",
      headers: { ...auth, "content-type": "application/x-www-form-urlencoded" },
      body: "state=disabled",
    });
    await form.body?.cancel();
    assert.ok(form.status >= 400 && form.status < 500, `form PATCH: ${form.status}`);
    assert.equal(snapshot(), before);
  });
});
