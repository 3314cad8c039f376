/**
 * Cookie stickiness through real `lb serve` processes in front of real demo backends: users
 * stay on their server, move (with a new cookie) when it drains, bad cookies are only
 * replaced, the cookie hides the server's address, and a cookie stays valid across lb
 * processes that share the secret, given or generated and kept in the state file.
 */
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { type LbProcess, serveYaml, startLbProcess } from "../_serve.ts";
import { until } from "../_stack.ts";

const COOKIE = "lb_srv";

/** A pool `web` of `backends` (ids backend-N, as the demo names itself), sticky on COOKIE. */
function stickyYaml(backends: DemoBackend[], secret?: string): string {
  return `
pools:
  web:
    strategy: round-robin
    sticky: { cookie: ${COOKIE}${secret ? `, secret: "${secret}"` : ""} }
    backends:
${backends.map((b) => `      - { url: "${b.url}", name: ${b.name} }`).join("\n")}
routes:
  - pool: web
`;
}

/** What one request saw: the server that answered and the sticky Set-Cookie, if any. */
interface Visit {
  status: number;
  server: string;
  /** The whole Set-Cookie line for COOKIE, or undefined. */
  setCookie: string | undefined;
  /** Its value. */
  token: string | undefined;
}

/** GET `/` through lb with `cookie` as the Cookie header (none when undefined). */
async function visit(lb: LbProcess, cookie?: string): Promise<Visit> {
  const res = await fetch(`${lb.url}/`, { headers: cookie === undefined ? {} : { cookie } });
  const body = await res.json();
  const setCookie = res.headers.getSetCookie().find((c) => c.startsWith(`${COOKIE}=`));
  const token = setCookie?.slice(COOKIE.length + 1).split(";")[0];
  return { status: res.status, server: body.backend, setCookie, token };
}

/** One user: a cookie jar holding at most the sticky cookie, and the server it is on. */
interface User {
  token: string;
  server: string;
}

/** `n` users, each arriving without a cookie and keeping the one lb sets. */
async function arrive(lb: LbProcess, n: number): Promise<User[]> {
  const users: User[] = [];
  for (let i = 0; i < n; i++) {
    const v = await visit(lb);
    assert.equal(v.status, 200);
    assert.ok(v.token, `user ${i} got a sticky cookie`);
    users.push({ token: v.token, server: v.server });
  }
  return users;
}

/** A user's request with its cookie. */
function again(lb: LbProcess, u: User): Promise<Visit> {
  return visit(lb, `other=1; ${COOKIE}=${u.token}`);
}

async function withBackends(n: number, fn: (backends: DemoBackend[]) => Promise<void>) {
  const backends: DemoBackend[] = [];
  try {
    for (let i = 1; i <= n; i++) backends.push(await startDemoBackend({ port: 0, index: i }));
    await fn(backends);
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
}

async function withLb(yaml: string, fn: (lb: LbProcess) => Promise<void>) {
  const lb = await startLbProcess(yaml);
  try {
    await fn(lb);
  } finally {
    await lb.close();
  }
}

Deno.test("20 users with their own cookies each stay on their first server", async () => {
  await withBackends(3, (backends) =>
    withLb(stickyYaml(backends), async (lb) => {
      const users = await arrive(lb, 20);
      // Round-robin spread them, so without the cookie most would move between rounds.
      assert.equal(new Set(users.map((u) => u.server)).size, 3);
      for (let round = 0; round < 4; round++) {
        for (const [i, u] of users.entries()) {
          const v = await again(lb, u);
          assert.equal(v.status, 200);
          assert.equal(v.server, u.server, `user ${i}, round ${round}`);
          assert.equal(v.setCookie, undefined, "a valid cookie is not set again");
        }
      }
    }));
});

Deno.test("draining a server moves its users to another server with a new cookie; others stay", async () => {
  await withBackends(3, (backends) =>
    withLb(stickyYaml(backends), async (lb) => {
      const users = await arrive(lb, 20);
      const tokenOf = new Map(users.map((u) => [u.server, u.token]));
      assert.equal(tokenOf.size, 3, "one token per server");
      const drained = "backend-1";
      const res = await fetch(`${lb.admin}/api/pools/web/servers/${drained}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ state: "draining" }),
      });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).state, "draining");

      let moved = 0;
      for (const u of users) {
        const v = await again(lb, u);
        assert.equal(v.status, 200);
        if (u.server !== drained) {
          assert.equal(v.server, u.server);
          assert.equal(v.setCookie, undefined);
          continue;
        }
        moved++;
        assert.notEqual(v.server, drained);
        assert.ok(v.token, "the moved user's cookie is replaced");
        assert.notEqual(v.token, u.token);
        assert.equal(v.token, tokenOf.get(v.server), "the new cookie names the new server");
        u.server = v.server;
        u.token = v.token;
        const next = await again(lb, u);
        assert.equal(next.server, u.server, "and the user stays there");
        assert.equal(next.setCookie, undefined);
      }
      assert.ok(moved > 0, "some users were on the drained server");
    }));
});

Deno.test("a forged or malformed cookie is replaced by a valid one, never an error", async () => {
  await withBackends(3, (backends) =>
    withLb(stickyYaml(backends), async (lb) => {
      const addr = backends[0].url.slice("http://".length);
      const cookies = [
        `${COOKIE}=AAAAAAAAAAAAAAAAAAAAAA`, // the right shape, not signed by lb
        `${COOKIE}=${addr}`, // naming a server by its address
        `${COOKIE}=backend-1`, // or by its id
        `${COOKIE}=`,
        COOKIE,
        `${COOKIE}="quoted"; x=y`,
        `${COOKIE}=%00%ff%0d%0a`,
        `${COOKIE}=${"z".repeat(3000)}`,
        `;;;=; ${COOKIE}==; =`,
      ];
      for (const cookie of cookies) {
        const v = await visit(lb, cookie);
        assert.equal(v.status, 200, cookie);
        assert.ok(v.token, `a valid cookie is set instead of ${cookie}`);
        assert.match(v.token, /^[A-Za-z0-9_-]{22}$/);
        const back = await visit(lb, `${COOKIE}=${v.token}`);
        assert.equal(back.server, v.server, "the replacement works");
        assert.equal(back.setCookie, undefined);
      }
    }));
});

Deno.test("the sticky cookie is Path=/, HttpOnly, SameSite=Lax and shows neither address nor port", async () => {
  await withBackends(3, (backends) =>
    withLb(stickyYaml(backends), async (lb) => {
      for (let i = 0; i < 3; i++) {
        const v = await visit(lb);
        const attrs = v.setCookie!.split(";").map((s) => s.trim());
        assert.deepEqual(attrs.slice(1).sort(), ["HttpOnly", "Path=/", "SameSite=Lax"]);
        const b = backends.find((x) => x.name === v.server)!;
        assert.ok(!v.token!.includes("127.0.0.1"), v.setCookie);
        assert.ok(!v.token!.includes(String(b.port)), v.setCookie);
        assert.ok(!v.token!.includes(btoa(b.url).slice(0, 12)), "not the address in base64");
      }
    }));
});

/** One cookie per server of `lb`: server name → token. */
async function tokensPerServer(lb: LbProcess, servers: number): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < 2 * servers && out.size < servers; i++) {
    const v = await visit(lb);
    out.set(v.server, v.token!);
  }
  assert.equal(out.size, servers);
  return out;
}

/** Asserts that `lb` sends each cookie in `tokens` to its server without setting a new one. */
async function assertAccepted(lb: LbProcess, tokens: Map<string, string>): Promise<void> {
  // In reverse, so round-robin alone would not land each on its server.
  for (const [server, token] of [...tokens].reverse()) {
    const v = await visit(lb, `${COOKIE}=${token}`);
    assert.equal(v.server, server);
    assert.equal(v.setCookie, undefined, `the cookie for ${server} is accepted as it is`);
  }
}

/** Asserts that `lb` replaces every cookie in `tokens`: it does not know them. */
async function assertRefused(lb: LbProcess, tokens: Map<string, string>): Promise<void> {
  for (const token of tokens.values()) {
    const v = await visit(lb, `${COOKIE}=${token}`);
    assert.equal(v.status, 200);
    assert.ok(v.token && v.token !== token, "an unknown cookie is replaced");
  }
}

Deno.test("two lb processes with the same sticky.secret accept each other's cookies", async () => {
  await withBackends(3, async (backends) => {
    const shared = stickyYaml(backends, "the-same-secret-on-every-lb-0123");
    await withLb(shared, (a) =>
      withLb(shared, async (b) => {
        assert.notEqual(a.url, b.url);
        const tokens = await tokensPerServer(a, 3);
        await assertAccepted(b, tokens);
        // And it is the secret that does it: another secret knows none of them.
        await withLb(
          stickyYaml(backends, "a-different-secret-altogether-456"),
          (c) => assertRefused(c, tokens),
        );
      }));
  });
});

/** The `stickySecret` of the state file in `dir`, or undefined (no file, or no secret yet). */
async function stickySecretIn(dir: string): Promise<string | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(`${dir}/lb.state.json`)).stickySecret;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

Deno.test("a generated sticky secret is kept in the state file, so cookies survive a restart", async () => {
  await withBackends(3, async (backends) => {
    const dir = await Deno.makeTempDir({ prefix: "lb_sticky_" });
    try {
      const yaml = stickyYaml(backends);
      const readSecret = () => stickySecretIn(dir);
      const first = await startLbProcess(yaml, { dir });
      let tokens: Map<string, string>;
      let secret: string;
      try {
        secret = (await until(readSecret, "the state file with stickySecret"))!;
        assert.ok(secret.length >= 16);
        tokens = await tokensPerServer(first, 3);
      } finally {
        await first.close();
      }
      const second = await startLbProcess(yaml, { dir });
      try {
        await assertAccepted(second, tokens);
        assert.equal(await readSecret(), secret, "the restarted lb kept the secret");
      } finally {
        await second.close();
      }
      // Each lb generates its own: one without this state file knows none of the cookies.
      await withLb(yaml, (other) => assertRefused(other, tokens));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("a sticky pool added by a reload keeps its generated secret in the state file, so its cookies survive a restart", async () => {
  await withBackends(3, async (backends) => {
    const dir = await Deno.makeTempDir({ prefix: "lb_sticky_" });
    try {
      const plain = `
pools:
  plain:
    backends: [{ url: "${backends[0].url}" }]
routes:
  - pool: plain
`;
      // The same pool \`plain\`, and a new sticky pool \`web\` that takes every request.
      const withWeb = stickyYaml(backends).replace(
        "pools:\n",
        `pools:
  plain:
    backends: [{ url: "${backends[0].url}" }]
`,
      );
      const first = await startLbProcess(plain, { dir });
      let tokens: Map<string, string>;
      try {
        assert.equal((await visit(first)).setCookie, undefined, "no sticky pool yet");
        await Deno.writeTextFile(first.configPath, serveYaml(withWeb));
        first.kill("SIGHUP");
        await until(() => first.lines.some((l) => l.kind === "reload"), "the reload line");
        tokens = await tokensPerServer(first, 3);
        await until(() => stickySecretIn(dir), "the state file to keep the sticky secret", 2000);
      } finally {
        await first.close();
      }
      const second = await startLbProcess(withWeb, { dir });
      try {
        await assertAccepted(second, tokens);
      } finally {
        await second.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});
