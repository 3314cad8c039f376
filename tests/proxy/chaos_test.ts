/**
 * Chaos under load, bounded in time and requests: while GETs run through lb at 40
 * concurrency, a backend process is killed (SIGKILL) and restarted, one server is drained
 * through the admin API, the config is reloaded, and a server is added through the admin API.
 * Afterwards: no failed client request, and every request accounted for in the access log
 * and the metrics. Deno's sanitizers check that nothing (connection, timer) leaks.
 */
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { waitFor } from "../_raw.ts";
import { freePort } from "../_stack.ts";

const CONCURRENCY = 40;
const MIN_REQUESTS = 3000;
const MAX_REQUESTS = 20_000;
const TIME_BOX_MS = 20_000;

async function listening(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

/** A demo backend in its own process, so it can be killed without warning. */
async function spawnBackend(port: number): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "src/main.ts",
      "backends",
      "--count",
      "1",
      "--port",
      String(port),
      "--latency",
      "1",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  assert.ok(await waitFor(() => listening(port), 10_000), "the backend process did not start");
  return child;
}

const config = (urls: string[], weights: number[] = []) =>
  parseConfig(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { access: true, format: json }
backends:
${urls.map((u, i) => `  - { url: "${u}", weight: ${weights[i] ?? 1} }`).join("\n")}
health: { enabled: true, interval: 100ms, timeout: 100ms, rise: 1, fall: 1 }
# The retry budget guards against overload; here every failed try may be retried.
retry: { attempts: 3, budgetPercent: 100 }
`);

Deno.test("under load, killing, restarting, draining, reloading and adding servers fails no request and loses none", async () => {
  const a = await startDemoBackend({ port: 0, index: 1, latencyMs: 1 });
  const b = await startDemoBackend({ port: 0, index: 2, latencyMs: 1 });
  const d = await startDemoBackend({ port: 0, index: 4, latencyMs: 1 });
  const cPort = freePort();
  let c: Deno.ChildProcess | undefined = await spawnBackend(cPort);
  const cUrl = `http://127.0.0.1:${cPort}`;
  const accessLines: string[] = [];
  const lb = startLb({
    config: config([a.url, b.url, cUrl]),
    stateFile: false,
    logger: createLogger({
      format: "json",
      access: true,
      write: (line) => {
        if (line.startsWith('{"type":"access"')) accessLines.push(line);
      },
    }),
  });
  const others: DemoBackend[] = [a, b, d];
  let sent = 0;
  let done = 0;
  let stop = false;
  const failures: string[] = [];
  const steps: string[] = [];
  const deadline = Date.now() + TIME_BOX_MS;
  try {
    const worker = async () => {
      while (!stop && sent < MAX_REQUESTS && Date.now() < deadline) {
        const i = sent++;
        try {
          const res = await fetch(`${lb.url}/chaos/${i}`);
          const text = await res.text();
          if (res.status !== 200) failures.push(`#${i}: ${res.status} ${text.slice(0, 200)}`);
        } catch (e) {
          failures.push(`#${i}: ${(e as Error).message}`);
        }
        done++;
      }
    };
    const load = Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const after = (n: number) => waitFor(() => done >= n || Date.now() > deadline, TIME_BOX_MS);
    const admin = (method: string, path: string, body: unknown) =>
      fetch(`${lb.adminUrl}${path}`, {
        method,
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      }).then(async (r) => {
        const text = await r.text();
        assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
      });

    const script = async () => {
      await after(300);
      c!.kill("SIGKILL");
      await c!.status;
      c = undefined;
      steps.push(`killed at ${done}`);
      await after(done + 300);
      c = await spawnBackend(cPort);
      steps.push(`restarted at ${done}`);
      await waitFor(() => lb.pool.servers.every((s) => s.healthy), 5000);
      await after(done + 300);
      await admin("PATCH", `/api/servers/${encodeURIComponent(`127.0.0.1:${a.port}`)}`, {
        state: "draining",
      });
      steps.push(`drained at ${done}`);
      await after(done + 300);
      const reloaded = await lb.reload(config([a.url, b.url, cUrl], [1, 3, 1]), "test");
      assert.ok(reloaded.ok, reloaded.problems.join("\n"));
      steps.push(`reloaded at ${done}`);
      await after(done + 300);
      await admin("POST", "/api/servers", { url: d.url });
      steps.push(`added at ${done}`);
      await after(Math.max(done + 500, MIN_REQUESTS));
      stop = true;
    };
    try {
      await script();
    } finally {
      stop = true;
      await load;
    }

    assert.deepEqual(failures, [], `after ${steps.join(", ")}`);
    assert.ok(sent >= MIN_REQUESTS, `only ${sent} requests (${steps.join(", ")})`);
    assert.equal(steps.length, 5, steps.join(", "));
    // Every request is in the access log and in the metrics, exactly once.
    await waitFor(() => accessLines.length === sent, 2000);
    assert.equal(accessLines.length, sent);
    const metrics = await (await fetch(`${lb.adminUrl}/metrics`)).text();
    const counted = [...metrics.matchAll(/^lb_requests_total\{[^}]*\} (\d+)$/gm)]
      .reduce((sum, m) => sum + Number(m[1]), 0);
    assert.equal(counted, sent);
    // The operations took effect.
    const byPort = (p: number) => lb.pool.servers.find((s) => s.port === p);
    assert.equal(byPort(a.port)?.draining, true);
    assert.equal(byPort(b.port)?.weight, 3);
    assert.ok(byPort(d.port), "the added server is not in the pool");
    assert.ok((byPort(d.port)?.requests ?? 0) > 0, "the added server got no traffic");
  } finally {
    await lb.shutdown(2000);
    if (c) {
      c.kill("SIGKILL");
      await c.status;
    }
    await Promise.all(others.map((s) => s.close()));
  }
});
