import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startDemoBackends } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { assertEventually, delayOrAbort, eachLine } from "../_stack.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * A backend whose `/slow` answers after `delayMs` (or when the client leaves), counting
 * requests in flight; every other path answers at once.
 */
function slowBackend(delayMs: number) {
  const stats = { inflight: 0, arrived: 0, health: 0 };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/health") {
      stats.health++;
      return new Response("ok");
    }
    if (path !== "/slow") return new Response("fast");
    stats.arrived++;
    stats.inflight++;
    try {
      await delayOrAbort(delayMs, req.signal);
    } finally {
      stats.inflight--;
    }
    return new Response("slow and complete");
  });
  return { stats, server, url: `http://127.0.0.1:${server.addr.port}` };
}

/** Runs `lb serve` with `yaml` as its config; resolves once it logged its traffic URL. */
async function spawnLb(yaml: string) {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/lb.yaml`;
  await Deno.writeTextFile(file, yaml);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts", "serve", "--config", file, "--log-format", "json"],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const stderr = new Response(child.stderr).text();
  let url: string | undefined;
  const reading = eachLine(child.stdout, (line) => {
    lines.push(line);
    try {
      const e = JSON.parse(line);
      if (e.kind === "listen" && e.listener === "traffic") url = e.url;
    } catch { /* not JSON */ }
  });
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  try {
    await assertEventually(() => url !== undefined || exited, 20_000, "lb to listen");
  } catch (e) {
    child.kill("SIGKILL");
    await Promise.all([status, reading, stderr]);
    throw e;
  }
  if (!url) {
    await reading;
    assert.fail(`lb exited early: ${await stderr}\n${lines.join("\n")}`);
  }
  return {
    url: url!,
    port: Number(new URL(url!).port),
    child,
    lines,
    /** Waits for the process to end and its output to be read. */
    async finish() {
      const s = await status;
      await reading;
      const err = await stderr;
      await Deno.remove(dir, { recursive: true });
      return { code: s.code, stderr: err };
    },
  };
}

function config(backendUrl: string, extra = ""): string {
  return `listen: { port: 0 }
admin: { enabled: false }
log: { access: false }
backends:
  - url: ${backendUrl}
health: { interval: 100ms }
${extra}
`;
}

/** Whether a new TCP connection to the port is refused. */
async function refused(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return false;
  } catch (e) {
    return e instanceof Deno.errors.ConnectionRefused;
  }
}

Deno.test("SIGTERM during a slow request: lb stops accepting, the request completes with 200, then lb exits 0", async () => {
  const backend = slowBackend(1_500);
  try {
    const lb = await spawnLb(config(backend.url));
    const pending = fetch(`${lb.url}/slow`).then(async (r) => ({
      status: r.status,
      body: await r.text(),
    }));
    await assertEventually(
      () => backend.stats.arrived === 1,
      5_000,
      "the request to reach the backend",
    );
    lb.child.kill("SIGTERM");

    // New connections are refused while the in-flight request is still running.
    let closed = false;
    const deadline = Date.now() + 1_000;
    while (!closed && Date.now() < deadline) closed = await refused(lb.port);
    assert.equal(closed, true, "the traffic port still accepted connections after SIGTERM");
    assert.equal(backend.stats.inflight, 1);

    assert.deepEqual(await pending, { status: 200, body: "slow and complete" });
    const { code, stderr } = await lb.finish();
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "");
    const shutdown = lb.lines.map((l) => JSON.parse(l)).filter((e) => e.kind === "shutdown");
    assert.deepEqual(shutdown.map((e) => e.message), [
      "SIGTERM: finishing in-flight requests (up to 15000ms)",
      "stopped",
    ]);
  } finally {
    await backend.server.shutdown();
  }
});

Deno.test("SIGTERM with a request longer than shutdownTimeout: lb cuts it at the timeout and still exits 0", async () => {
  const backend = slowBackend(60_000);
  try {
    const lb = await spawnLb(config(backend.url, "shutdownTimeout: 300ms"));
    const pending = fetch(`${lb.url}/slow`).then(
      async (r) => `status ${r.status}: ${await r.text()}`,
      (e) => `failed: ${(e as Error).name}`,
    );
    await assertEventually(
      () => backend.stats.arrived === 1,
      5_000,
      "the request to reach the backend",
    );
    const t0 = Date.now();
    lb.child.kill("SIGTERM");
    const { code, stderr } = await lb.finish();
    assert.equal(code, 0, stderr);
    assert.ok(Date.now() - t0 < 30_000);
    // The client did not get a made-up success.
    assert.doesNotMatch(await pending, /status 200/);
    await assertEventually(
      () => backend.stats.inflight === 0,
      5_000,
      "the upstream request to be cancelled",
    );
    const last = JSON.parse(lb.lines.at(-1)!);
    assert.equal(last.message, "stopped; some requests were cut at the shutdown timeout");
  } finally {
    await backend.server.shutdown();
  }
});

Deno.test("a server set to draining gets no new requests while its in-flight request finishes", async () => {
  const slow = slowBackend(400);
  const backends = await startDemoBackends({ count: 1, port: 0 });
  const lb = startLb({
    config: parseConfig(`listen: { port: 0 }
admin: { enabled: false }
log: { access: false }
health: { enabled: false }
backends:
  - url: ${slow.url}
  - url: ${backends[0].url}
`),
    logger: createLogger({ format: "json", access: false, write: () => {} }),
  });
  try {
    const [s1] = lb.pool.servers;
    const pending = fetch(`${lb.url}/slow`).then(async (r) => [r.status, await r.text()]);
    await assertEventually(() => slow.stats.arrived === 1, 2_000, "the slow request in flight");
    lb.pool.setAdminState(s1, "draining");
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${lb.url}/x`);
      assert.equal(res.headers.get("x-backend"), "backend-1");
      await res.body?.cancel();
    }
    assert.deepEqual(await pending, [200, "slow and complete"]);
    assert.equal(slow.stats.arrived, 1);
    assert.equal(s1.inflight, 0);
  } finally {
    await lb.shutdown(2_000);
    await slow.server.shutdown();
    await Promise.all(backends.map((b) => b.close()));
  }
});

Deno.test("lb.shutdown waits for in-flight requests and stops the health loop", async () => {
  const slow = slowBackend(300);
  const lb = startLb({
    config: parseConfig(config(slow.url, "").replace("interval: 100ms", "interval: 20ms")),
    logger: createLogger({ format: "json", access: false, write: () => {} }),
  });
  await assertEventually(() => slow.stats.health >= 2, 2_000, "health checks");
  const pending = fetch(`${lb.url}/slow`).then(async (r) => [r.status, await r.text()]);
  await assertEventually(() => slow.stats.arrived === 1, 2_000, "the request in flight");
  assert.equal(await lb.shutdown(5_000), true);
  assert.deepEqual(await pending, [200, "slow and complete"]);
  const checks = slow.stats.health;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(slow.stats.health, checks);
  await slow.server.shutdown();
});

/**
 * Starts `lb serve` on `yaml` and sends `signal` from inside the stdout reader, the moment
 * the traffic listen line arrives (polling would give lb time it may not have). Resolves
 * to the process, its JSON lines so far, and the stdout pump.
 */
async function signalOnListen(yaml: string, signal: Deno.Signal) {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/lb.yaml`, yaml);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts", "serve", "--config", `${dir}/lb.yaml`],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: Record<string, unknown>[] = [];
  let url: string | undefined;
  const reading = eachLine(child.stdout, (line) => {
    const e = JSON.parse(line);
    lines.push(e);
    if (e.kind === "listen" && e.listener === "traffic" && url === undefined) {
      url = e.url;
      child.kill(signal);
    }
  });
  const stderr = new Response(child.stderr).text();
  return {
    child,
    lines,
    url: () => url,
    async finish() {
      const s = await child.status;
      await reading;
      await Deno.remove(dir, { recursive: true });
      return { code: s.code, stderr: await stderr };
    },
  };
}

Deno.test("SIGTERM or SIGHUP the moment lb says it listens is handled, even while lb stores a new sticky secret", async () => {
  const backend = slowBackend(0);
  // A sticky pool without a secret: lb writes the one it makes up before it is ready.
  const yaml = `listen: { port: 0 }
admin: { enabled: false }
log: { access: false, format: json }
health: { enabled: false }
pools:
  web:
    sticky: { cookie: srv }
    backends: [{ url: "${backend.url}" }]
routes:
  - pool: web
`;
  try {
    const term = await signalOnListen(yaml, "SIGTERM");
    const t = await term.finish();
    assert.equal(t.code, 0, `exit after an early SIGTERM: ${t.stderr}`);
    assert.ok(term.lines.some((l) => l.kind === "shutdown" && l.message === "stopped"));

    // SIGHUP reloads; unhandled, it would end the process.
    const hup = await signalOnListen(yaml, "SIGHUP");
    try {
      await assertEventually(
        () => hup.lines.some((l) => l.kind === "reload"),
        10_000,
        "the reload line",
      );
      const res = await fetch(`${hup.url()}/`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    } finally {
      hup.child.kill("SIGTERM");
    }
    const h = await hup.finish();
    assert.equal(h.code, 0, `exit after SIGHUP, then SIGTERM: ${h.stderr}`);
  } finally {
    await backend.server.shutdown();
  }
});
