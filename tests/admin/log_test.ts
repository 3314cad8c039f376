/** The logs of `lb serve` as a subprocess: JSON access lines and admin event lines. */
// The tests poke at JSON answers field by field.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { startDemoBackend } from "../../backends/demo.ts";
import { createLogger } from "../../src/log.ts";
import { eachLine, freePort } from "../_stack.ts";

/** Collects a child's stdout as parsed JSON lines. */
function jsonLines(stream: ReadableStream<Uint8Array>) {
  const lines: Record<string, any>[] = [];
  const raw: string[] = [];
  const pump = eachLine(stream, (line) => {
    raw.push(line);
    lines.push(JSON.parse(line));
  });
  return {
    lines,
    raw,
    async waitFor(pred: (l: Record<string, any>) => boolean, what: string, ms = 15_000) {
      const end = Date.now() + ms;
      for (;;) {
        const hit = lines.find(pred);
        if (hit) return hit;
        if (Date.now() > end) {
          throw new Error(`timed out waiting for ${what}; got:\n${raw.join("\n")}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    done: pump,
  };
}

Deno.test("lb serve --log-format json writes one JSON access line per request, and event lines for admin changes", async () => {
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const dir = await Deno.makeTempDir();
  const config = `${dir}/lb.yaml`;
  await Deno.writeTextFile(
    config,
    `listen: {port: 0}\nadmin: {port: 0}\nhealth: {enabled: false}\nbackends:\n  - {url: "${backend.url}", name: web}\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts", "serve", "--config", config, "--log-format", "json"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = jsonLines(child.stdout);
  try {
    const traffic = await out.waitFor((l) => l.listener === "traffic", "the traffic listener");
    const admin = await out.waitFor((l) => l.listener === "admin", "the admin listener");
    const res = await fetch(`${traffic.url}/hello?x=1`, {
      method: "POST",
      headers: { "x-request-id": "req-42" },
      body: "12345",
    });
    assert.equal(res.status, 200);
    const body = await res.text();

    const line = await out.waitFor((l) => l.type === "access", "an access line");
    assert.equal(typeof line.time, "string");
    assert.ok(!Number.isNaN(Date.parse(line.time)));
    assert.equal(line.requestId, "req-42");
    assert.equal(line.client, "127.0.0.1");
    assert.equal(line.method, "POST");
    assert.equal(line.path, "/hello?x=1");
    assert.equal(line.status, 200);
    assert.equal(line.backend, "web");
    assert.equal(line.tries, 1);
    assert.equal(typeof line.durationMs, "number");
    assert.equal(line.bytesIn, 5);
    assert.equal(line.bytesOut, new TextEncoder().encode(body).length);

    const patch = await fetch(`${admin.url}/api/servers/web`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ weight: 3 }),
    });
    assert.equal(patch.status, 200);
    await patch.body?.cancel();
    const ev = await out.waitFor(
      (l) => l.type === "event" && l.kind === "admin",
      "an admin event line",
    );
    assert.equal(ev.who, "127.0.0.1");
    assert.equal(ev.server, "web");
    assert.equal(ev.weight, 3);
    assert.match(ev.message, /^127\.0\.0\.1: web: weight 1 → 3$/);
    // Every line on stdout is JSON (jsonLines would have thrown otherwise).
    assert.ok(out.raw.every((l) => l.startsWith("{")));
  } finally {
    child.kill("SIGTERM");
    const status = await child.status;
    await out.done;
    await backend.close();
    await Deno.remove(dir, { recursive: true });
    assert.equal(status.code, 0);
  }
});

Deno.test("batched access lines are all written whole, by two workers sharing stdout, before lb's last line", async () => {
  const backend = await startDemoBackend({ port: 0, index: 1 });
  const dir = await Deno.makeTempDir();
  const config = `${dir}/lb.yaml`;
  await Deno.writeTextFile(
    config,
    `listen: {port: 0}\nadmin: {enabled: false}\nhealth: {enabled: false}\nbackends:\n  - {url: "${backend.url}", name: web}\n`,
  );
  // A fixed port: the second worker must find the first one's listener.
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "src/main.ts",
      "serve",
      "--config",
      config,
      "--port",
      String(port),
      "--log-format",
      "json",
      "--workers",
      "2",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = jsonLines(child.stdout);
  let status: Deno.CommandStatus | undefined;
  try {
    // Each process says when it listens.
    await out.waitFor(
      () => out.lines.filter((l) => l.listener === "traffic").length === 2,
      "both workers listening",
    );
    // 40 clients on their own connections, so both workers get some: 600 requests.
    const ids = new Set<string>();
    await Promise.all(Array.from({ length: 40 }, async (_, c) => {
      const client = Deno.createHttpClient({});
      try {
        for (let i = 0; i < 15; i++) {
          const id = `c${c}-r${i}`;
          ids.add(id);
          const res = await fetch(`http://127.0.0.1:${port}/x`, {
            headers: { "x-request-id": id },
            client,
          });
          await res.arrayBuffer();
        }
      } finally {
        client.close();
      }
    }));
    child.kill("SIGTERM");
    status = await child.status;
    await out.done;
    // jsonLines throws on a torn line; every request has exactly one access line.
    const access = out.lines.filter((l) => l.type === "access");
    assert.equal(access.length, ids.size);
    assert.deepEqual(new Set(access.map((l) => l.requestId)), ids);
    const last = out.lines.findLastIndex((l) => l.type === "access");
    const stopped = out.lines.findLastIndex((l) => l.kind === "shutdown");
    assert.ok(stopped > last, "an access line came after lb's last shutdown line");
    assert.equal(status.code, 0);
  } finally {
    if (!status) {
      child.kill("SIGTERM");
      await child.status;
      await out.done;
    }
    await backend.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a JSON access line is exactly JSON.stringify of the record (type first, ISO time), optional fields only when set", () => {
  const lines: string[] = [];
  const logger = createLogger({ format: "json", access: true, write: (l) => lines.push(l) });
  const base = {
    time: Date.UTC(2026, 11, 5, 2, 30, 0, 123),
    requestId: "id-1",
    client: "10.0.0.1",
    method: "GET",
    path: '/a"b\\c?q=é\u2028',
    status: 502,
    tries: 2,
    durationMs: 12.345678,
    bytesIn: 0,
    bytesOut: 17,
  };
  const full = {
    ...base,
    backend: "web",
    error: 'connect failed:\n"refused"',
    droppedHeaders: 1,
    pool: "default",
    route: "all",
  };
  for (const rec of [base, full, { ...full, time: full.time + 1 }]) {
    logger.access(rec);
    const want = JSON.stringify({ type: "access", ...rec, time: new Date(rec.time).toISOString() });
    assert.equal(lines.at(-1), want);
  }
});
