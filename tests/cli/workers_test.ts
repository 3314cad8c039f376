import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { freePort, until } from "../_stack.ts";
import { assertPromtoolClean } from "../_promtool.ts";
import { spawnLb } from "./_cli.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** The pids listening on a TCP port, from `ss`. */
async function listeners(port: number): Promise<Set<string>> {
  const out = await new Deno.Command("ss", {
    args: ["-ltnpH", `sport = :${port}`],
    stdout: "piped",
  }).output();
  return new Set([...new TextDecoder().decode(out.stdout).matchAll(/pid=(\d+)/g)].map((m) => m[1]));
}

Deno.test("lb serve --workers 2 shares the port between two processes that follow the admin API, and stops both", async () => {
  const b1 = await startDemoBackend({ port: 0, index: 1 });
  const b2 = await startDemoBackend({ port: 0, index: 2 });
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const adminPort = freePort();
  await Deno.writeTextFile(
    `${dir}/lb.yaml`,
    `listen: {port: ${port}}\nadmin: {port: ${adminPort}}\nlog: {access: false}\n` +
      `backends:\n  - {url: "${b1.url}", name: b1}\n  - {url: "${b2.url}", name: b2}\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, "serve", "--workers", "2"],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = new Response(child.stdout).text();
  const err = new Response(child.stderr).text();
  try {
    await until(async () => (await listeners(port)).size === 2, "two processes listening", 15_000);
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(res.status, 200);
    await res.body?.cancel();

    // One admin API change reaches both workers (through the state file).
    const patch = await fetch(`http://127.0.0.1:${adminPort}/api/servers/b1`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ state: "disabled" }),
    });
    assert.equal(patch.status, 200);
    await patch.body?.cancel();
    await until(
      async () => {
        // New connections each time, so the kernel spreads them over both processes.
        for (let i = 0; i < 20; i++) {
          const client = Deno.createHttpClient({});
          try {
            const r = await fetch(`http://127.0.0.1:${port}/`, { client });
            if ((await r.json()).backend !== "backend-2") return false;
          } finally {
            client.close();
          }
        }
        return true;
      },
      "every worker to stop using b1",
      10_000,
    );
  } finally {
    child.kill("SIGTERM");
  }
  assert.equal((await child.status).code, 0, await err);
  await out;
  assert.equal((await listeners(port)).size, 0, "no worker is left listening");
  await b1.close();
  await b2.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--workers must be a whole number from 1 to 64", async () => {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, "serve", "--workers", "0"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(r.code, 2);
  assert.match(new TextDecoder().decode(r.stderr), /--workers must be a whole number from 1 to 64/);
});

/** `lb serve --workers N` in a temp dir over `backends`; its ports and a way to stop it. */
async function serveWorkers(n: string, backends: { url: string }[], extraArgs: string[] = []) {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const adminPort = freePort();
  await Deno.writeTextFile(
    `${dir}/lb.yaml`,
    `listen: {port: ${port}}\nadmin: {port: ${adminPort}}\nlog: {access: false, format: json}\n` +
      `backends:\n${backends.map((b, i) => `  - {url: "${b.url}", name: b${i + 1}}`).join("\n")}\n`,
  );
  const { child, out, reading, errText } = spawnLb(
    ["serve", "--config", `${dir}/lb.yaml`, "--workers", n, ...extraArgs],
  );
  const admin = `http://127.0.0.1:${adminPort}`;
  return {
    port,
    admin,
    child,
    out,
    async metrics(): Promise<string> {
      return await (await fetch(`${admin}/metrics`)).text();
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone
      }
      const status = await child.status;
      await reading;
      await Deno.remove(dir, { recursive: true });
      return { code: status.code, stderr: await errText };
    },
  };
}

/** A request on a connection of its own, so the kernel may hand it to any process. */
async function fresh(url: string): Promise<{ status: number; backend?: string }> {
  const client = Deno.createHttpClient({});
  try {
    const r = await fetch(url, { client });
    const body = await r.json().catch(() => ({}));
    return { status: r.status, backend: body.backend };
  } finally {
    client.close();
  }
}

/** The servers' requests summed in the first snapshot of a fresh /events stream. */
async function snapshotRequests(admin: string): Promise<number> {
  const res = await fetch(`${admin}/events`);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const m = /^event: snapshot\ndata: (.*)\n\n/m.exec(buf);
      if (m) {
        const servers = JSON.parse(m[1]).servers as { requests: number }[];
        return servers.reduce((n, s) => n + s.requests, 0);
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("/events ended before its snapshot");
      buf += value;
    }
  } finally {
    await reader.cancel();
  }
}

/** The sum of every sample of `name` in a Prometheus text. */
function total(text: string, name: string): number {
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) {
    n += Number(m[1]);
  }
  return n;
}

Deno.test("--workers 2: /metrics and /api/servers add up both processes; a change is everywhere when the API answers", async () => {
  const b1 = await startDemoBackend({ port: 0, index: 1 });
  const b2 = await startDemoBackend({ port: 0, index: 2 });
  const lb = await serveWorkers("2", [b1, b2]);
  try {
    await until(
      async () => (await listeners(lb.port)).size === 2,
      "two processes listening",
      15_000,
    );
    await until(
      async () => total(await lb.metrics(), "lb_processes") === 2,
      "both in /metrics",
      10_000,
    );
    const N = 60;
    for (let i = 0; i < N; i++) {
      assert.equal((await fresh(`http://127.0.0.1:${lb.port}/`)).status, 200);
    }
    const text = await lb.metrics();
    assert.equal(total(text, "lb_requests_total"), N, "lb_requests_total summed over /metrics");
    assert.equal(total(text, "lb_processes"), 2);
    const servers = (await (await fetch(`${lb.admin}/api/servers`)).json()).servers;
    assert.equal(servers.reduce((n: number, s: { requests: number }) => n + s.requests, 0), N);
    await assertPromtoolClean(text); // promtool accepts the added-up exposition
    // /events (and so the dashboard) shows the same totals, at most a second late.
    await until(async () => (await snapshotRequests(lb.admin)) === N, "the /events totals", 5000);
    // A change is in effect in every process when the API answers: no waiting here.
    const patch = await fetch(`${lb.admin}/api/servers/b1`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ state: "disabled" }),
    });
    assert.equal(patch.status, 200);
    await patch.body?.cancel();
    for (let i = 0; i < 30; i++) {
      assert.equal((await fresh(`http://127.0.0.1:${lb.port}/`)).backend, "backend-2");
    }
  } finally {
    const { code, stderr } = await lb.stop();
    assert.equal(code, 0, stderr);
    await b1.close();
    await b2.close();
  }
});

Deno.test("--workers auto: a worker killed with SIGKILL is started again, its counts stay in the totals; the parent killed takes its workers with it", async () => {
  const b1 = await startDemoBackend({ port: 0, index: 1 });
  const lb = await serveWorkers("auto", [b1]);
  try {
    await until(
      async () => (await listeners(lb.port)).size === navigator.hardwareConcurrency,
      "every process listening",
      15_000,
    );
    const pids = await listeners(lb.port);
    for (let i = 0; i < 40; i++) {
      assert.equal((await fresh(`http://127.0.0.1:${lb.port}/`)).status, 200);
    }
    assert.equal(total(await lb.metrics(), "lb_requests_total"), 40);
    const worker = [...pids].find((p) => Number(p) !== lb.child.pid)!;
    Deno.kill(Number(worker), "SIGKILL");
    await until(
      () => /worker \d+ \(pid \d+\) was killed by SIGKILL; starting it again/.test(lb.out()),
      "the restart line",
      10_000,
    );
    await until(
      async () => {
        const now = await listeners(lb.port);
        return now.size === pids.size && !now.has(worker);
      },
      "a new worker listening",
      15_000,
    );
    // What the dead worker had counted stays in the totals: they never go down.
    await until(
      async () => total(await lb.metrics(), "lb_processes") === pids.size,
      "all back",
      10_000,
    );
    assert.equal(total(await lb.metrics(), "lb_requests_total"), 40);
    const servers = (await (await fetch(`${lb.admin}/api/servers`)).json()).servers;
    assert.equal(servers[0].requests, 40);
    assert.equal((await fresh(`http://127.0.0.1:${lb.port}/`)).status, 200);
    lb.child.kill("SIGKILL");
    await until(
      async () => (await listeners(lb.port)).size === 0,
      "the workers to leave with their parent",
      10_000,
    );
  } finally {
    await lb.stop();
    await b1.close();
  }
});
