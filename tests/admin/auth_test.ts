/** Who may use the admin listener: tokens, the loopback rule, Host and Origin checks. */
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import {
  assertAdminSafe,
  bearerToken,
  isLocalHostHeader,
  isLoopback,
  tokenMatches,
} from "../../src/admin/auth.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { testConfig, until } from "../_stack.ts";

const TOKEN = "s3cret-token-for-tests-0123456789";

async function startWithToken(
  token?: string,
): Promise<{ lb: Lb; b: DemoBackend; close(): Promise<void> }> {
  const b = await startDemoBackend({ port: 0, index: 1 });
  const lb = startLb({
    logger: createLogger({ format: "json", access: false, write: () => {} }),
    config: testConfig([b.url], {
      admin: { enabled: true, host: "127.0.0.1", port: 0, ...(token && { token }) },
    }),
  });
  return {
    lb,
    b,
    async close() {
      await lb.shutdown(2000);
      await b.close();
    },
  };
}

async function status(url: string, init: RequestInit = {}): Promise<number> {
  const res = await fetch(url, init);
  await res.body?.cancel();
  return res.status;
}

/** Sends raw bytes and returns the status line (fetch will not send a foreign Host). */
async function rawStatus(port: number, request: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(request));
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text.split("\r\n")[0];
  } finally {
    conn.close();
  }
}

Deno.test("with a token, /api, /metrics and /events need it and answer 401 otherwise", async () => {
  const st = await startWithToken(TOKEN);
  const a = st.lb.adminUrl!;
  const auth = { authorization: `Bearer ${TOKEN}` };
  try {
    for (const path of ["/api/servers", "/api/strategy", "/metrics", "/events"]) {
      const res = await fetch(a + path);
      assert.equal(res.status, 401, path);
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="lb admin"');
      const body = await res.json();
      assert.match(body.error.message, /Authorization: Bearer/);
      assert.equal(await status(a + path, { headers: { authorization: "Bearer wrong" } }), 401);
      assert.equal(await status(a + path, { headers: { authorization: TOKEN } }), 401);
    }
    // A refused change changes nothing.
    const post = await fetch(a + "/api/servers", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer nope" },
      body: JSON.stringify({ url: "http://10.0.0.9:80" }),
    });
    assert.equal(post.status, 401);
    await post.body?.cancel();
    assert.equal(st.lb.pool.servers.length, 1);

    assert.equal(await status(a + "/api/servers", { headers: auth }), 200);
    assert.equal(
      await status(a + "/api/servers", { headers: { authorization: `bearer  ${TOKEN}` } }),
      200,
    );
    assert.equal(await status(a + "/metrics", { headers: auth }), 200);
    // EventSource cannot send headers: /events also takes ?access_token= (RFC 6750 §2.3).
    const ev = await fetch(a + `/events?access_token=${TOKEN}`);
    assert.equal(ev.status, 200);
    await ev.body?.cancel();
    assert.equal(await status(a + `/api/servers?access_token=${TOKEN}`), 401);
    // The balancer's health and the (data-free) dashboard page are open.
    assert.equal(await status(a + "/healthz"), 200);
    assert.equal(await status(a + "/"), 200);
  } finally {
    await st.close();
  }
});

Deno.test("tokens are compared in constant time over their SHA-256 digests", () => {
  assert.equal(tokenMatches(TOKEN, TOKEN), true);
  assert.equal(tokenMatches(TOKEN + "x", TOKEN), false);
  assert.equal(tokenMatches("", TOKEN), false);
  assert.equal(tokenMatches(undefined, TOKEN), false);
  assert.equal(bearerToken(`Bearer ${TOKEN}`), TOKEN);
  assert.equal(bearerToken(`Basic ${TOKEN}`), undefined);
  assert.equal(bearerToken("Bearer a b"), undefined);
  assert.equal(isLoopback("127.0.0.1"), true);
  assert.equal(isLoopback("::1"), true);
  assert.equal(isLoopback("0.0.0.0"), false);
  assert.equal(isLoopback("192.168.1.5"), false);
  assert.equal(isLocalHostHeader("localhost:8001"), true);
  assert.equal(isLocalHostHeader("[::1]:8001"), true);
  assert.equal(isLocalHostHeader("evil.example:8001"), false);
});

Deno.test("without a token, requests naming another host are refused (no DNS rebinding)", async () => {
  const st = await startWithToken();
  const port = Number(new URL(st.lb.adminUrl!).port);
  try {
    const evil = await rawStatus(
      port,
      "GET /api/servers HTTP/1.1\r\nHost: rebind.evil.example:8001\r\nConnection: close\r\n\r\n",
    );
    assert.match(evil, / 403 /);
    const local = await rawStatus(
      port,
      `GET /api/servers HTTP/1.1\r\nHost: localhost:${port}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(local, / 200 /);
    const health = await rawStatus(
      port,
      "GET /healthz HTTP/1.1\r\nHost: rebind.evil.example\r\nConnection: close\r\n\r\n",
    );
    assert.match(health, / 200 /);
  } finally {
    await st.close();
  }
});

Deno.test("a change sent from another site's page (cross-site Origin) is refused", async () => {
  const st = await startWithToken();
  const a = st.lb.adminUrl!;
  try {
    const res = await fetch(a + "/api/servers/backend-1", {
      method: "DELETE",
      headers: { origin: "http://evil.example" },
    });
    assert.equal(res.status, 403);
    await res.body?.cancel();
    const same = await fetch(a + "/api/servers/127.0.0.1:" + st.b.port, {
      method: "PATCH",
      headers: { origin: a, "content-type": "application/json" },
      body: JSON.stringify({ weight: 4 }),
    });
    assert.equal(same.status, 200);
    await same.body?.cancel();
    assert.equal(st.lb.pool.servers.length, 1);
    assert.equal(st.lb.pool.servers[0].weight, 4);
  } finally {
    await st.close();
  }
});

Deno.test("an admin token from the environment must be at least 16 characters", () => {
  const config = testConfig(["http://127.0.0.1:1"], { admin: { enabled: true, port: 0 } });
  assert.throws(() => assertAdminSafe(config, "short"), /LB_ADMIN_TOKEN must be at least 16/);
  assertAdminSafe(config, TOKEN);
});

Deno.test("startLb refuses a non-loopback admin listener without a token", () => {
  assert.throws(
    () =>
      startLb({
        config: testConfig(["http://127.0.0.1:1"], {
          admin: { enabled: true, host: "0.0.0.0", port: 0 },
        }),
      }),
    /refusing to start: the admin listener on 0\.0\.0\.0:0 is reachable from other machines and has no token/,
  );
});

async function writeConfig(dir: string, yaml: string): Promise<string> {
  const path = `${dir}/lb.yaml`;
  await Deno.writeTextFile(path, yaml);
  return path;
}

Deno.test("lb serve exits 1 with one line when the admin listener is not loopback and has no token", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await writeConfig(
      dir,
      "listen: {port: 0}\nadmin: {host: 0.0.0.0, port: 0}\nbackends: [{url: 'http://127.0.0.1:1'}]\nhealth: {enabled: false}\n",
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "src/main.ts", "serve", "--config", path],
      env: { LB_ADMIN_TOKEN: "" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    const err = new TextDecoder().decode(out.stderr).trim();
    assert.equal(err.split("\n").length, 1, err);
    assert.match(err, /^lb: refusing to start: .*set admin\.token \(or LB_ADMIN_TOKEN\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LB_ADMIN_TOKEN from the environment protects the API when admin.token is unset", async () => {
  const dir = await Deno.makeTempDir();
  const b = await startDemoBackend({ port: 0, index: 1 });
  const path = await writeConfig(
    dir,
    `listen: {port: 0}\nadmin: {host: 0.0.0.0, port: 0}\nbackends: [{url: '${b.url}'}]\nhealth: {enabled: false}\nlog: {access: false}\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts", "serve", "--config", path, "--log-format", "json"],
    env: { LB_ADMIN_TOKEN: TOKEN },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let buffered = "";
    const adminUrl = await until(
      async () => {
        const { value, done } = await lines.read();
        if (done) throw new Error("lb serve exited early");
        buffered += value;
        const m = /"listener":"admin","url":"([^"]+)"/.exec(buffered);
        return m?.[1];
      },
      "the admin listener",
      15_000,
    );
    const port = new URL(adminUrl!).port;
    const a = `http://127.0.0.1:${port}`;
    assert.equal(await status(a + "/api/servers"), 401);
    assert.equal(
      await status(a + "/api/servers", { headers: { authorization: `Bearer ${TOKEN}` } }),
      200,
    );
  } finally {
    child.kill("SIGTERM");
    await lines.cancel();
    await child.status;
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
});
