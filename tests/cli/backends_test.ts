import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { type DemoBackend, startDemoBackend, startDemoBackends } from "../../backends/demo.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Runs `fn` with one demo backend on a free port, and closes it afterwards. */
async function withBackend(
  opts: Partial<Parameters<typeof startDemoBackend>[0]>,
  fn: (b: DemoBackend) => Promise<void>,
): Promise<void> {
  const b = await startDemoBackend({ port: 0, index: 1, ...opts });
  try {
    await fn(b);
  } finally {
    await b.close();
  }
}

/** The JSON fields the demo backends answer with; each route fills some of them. */
interface Answer {
  backend?: string;
  port?: number;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  error?: string;
  status?: string;
  latencyMs?: number;
  failRate?: number;
  healthy?: boolean;
}

async function getJson(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; headers: Headers; body: Answer }> {
  const res = await fetch(url, init);
  return { status: res.status, headers: res.headers, body: await res.json() };
}

/** Sends one raw HTTP/1.1 request (so nothing normalises the target) and returns the response body. */
async function rawGet(port: number, target: string): Promise<string> {
  const conn = await Deno.connect({ port });
  await conn.write(
    new TextEncoder().encode(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
  );
  const text = await new Response(conn.readable).text();
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}

async function sha256(data: Uint8Array): Promise<string> {
  return Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>)),
  )
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("a demo backend answers any request with JSON naming itself and an x-backend header", async () => {
  await withBackend({ index: 2 }, async (b) => {
    const { status, headers, body } = await getJson(`${b.url}/hello`, {
      method: "PUT",
      headers: { "x-test": "yes" },
    });
    assert.equal(status, 200);
    assert.equal(headers.get("x-backend"), "backend-2");
    assert.equal(headers.get("content-type"), "application/json");
    assert.equal(body.backend, "backend-2");
    assert.equal(body.port, b.port);
    assert.equal(body.method, "PUT");
    assert.equal(body.path, "/hello");
    assert.equal(body.headers?.["x-test"], "yes");
    assert.equal(b.url, `http://127.0.0.1:${b.port}`);
  });
});

Deno.test("a demo backend reports the path with its query string exactly as received", async () => {
  await withBackend({}, async (b) => {
    assert.equal((await getJson(`${b.url}/search?q=a%20b&x=1`)).body.path, "/search?q=a%20b&x=1");
    const raw = JSON.parse(await rawGet(b.port, "/a/./../b//c?x=1&y=%2F"));
    assert.equal(raw.path, "/a/./../b//c?x=1&y=%2F");
  });
});

Deno.test("/health answers 200, then 503 once POST /_demo sets healthy to false", async () => {
  await withBackend({}, async (b) => {
    const ok = await getJson(`${b.url}/health`);
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { status: "ok" });
    const set = await getJson(`${b.url}/_demo`, {
      method: "POST",
      body: JSON.stringify({ healthy: false }),
    });
    assert.equal(set.status, 200);
    assert.deepEqual(set.body, { latencyMs: 0, failRate: 0, healthy: false });
    const down = await getJson(`${b.url}/health`);
    assert.equal(down.status, 503);
    assert.deepEqual(down.body, { status: "unhealthy" });
  });
});

Deno.test("a demo backend with 200ms latency answers after at least 190ms", async () => {
  await withBackend({ latencyMs: 200 }, async (b) => {
    const t0 = performance.now();
    const { status } = await getJson(`${b.url}/slow`);
    assert.equal(status, 200);
    assert.ok(performance.now() - t0 >= 190, `answered after ${performance.now() - t0}ms`);
  });
});

Deno.test("a fail rate of 1 turns every request into a simulated 500 that names the backend", async () => {
  await withBackend({ failRate: 1 }, async (b) => {
    for (let i = 0; i < 5; i++) {
      const { status, headers, body } = await getJson(`${b.url}/x`);
      assert.equal(status, 500);
      assert.equal(headers.get("x-backend"), "backend-1");
      assert.deepEqual(body, { backend: "backend-1", error: "simulated failure" });
    }
    assert.equal((await getJson(`${b.url}/health`)).status, 200);
  });
});

Deno.test("the injected random source decides which requests fail", async () => {
  const draws = [0.1, 0.9, 0.4, 0.6];
  await withBackend({ failRate: 0.5, random: () => draws.shift()! }, async (b) => {
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await getJson(`${b.url}/x`)).status);
    assert.deepEqual(statuses, [500, 200, 500, 200]);
  });
});

Deno.test("POST /_demo rejects bad JSON, wrong types, out-of-range values and unknown keys with 400, changing nothing", async () => {
  await withBackend({ latencyMs: 5, failRate: 0.25 }, async (b) => {
    const bad = [
      "{not json",
      "[1]",
      "null",
      '{"latencyMs": "50"}',
      '{"latencyMs": -1}',
      '{"latencyMs": 600001}',
      '{"failRate": 1.5}',
      '{"healthy": "no"}',
      '{"healthy": false, "latency": 5}',
      '{"failRate": 0, "latencyMs": null}',
    ];
    for (const body of bad) {
      const res = await getJson(`${b.url}/_demo`, { method: "POST", body });
      assert.equal(res.status, 400, body);
      assert.equal(typeof res.body.error, "string", body);
      assert.ok((res.body.error?.length ?? 0) > 10, body);
    }
    assert.deepEqual(b.settings, { latencyMs: 5, failRate: 0.25, healthy: true });
    assert.deepEqual((await getJson(`${b.url}/_demo`)).body, {
      latencyMs: 5,
      failRate: 0.25,
      healthy: true,
    });
    const ok = await getJson(`${b.url}/_demo`, {
      method: "POST",
      body: '{"latencyMs": 0, "failRate": 1}',
    });
    assert.deepEqual(ok.body, { latencyMs: 0, failRate: 1, healthy: true });
    assert.equal((await getJson(`${b.url}/x`)).status, 500);
  });
});

Deno.test("POST /echo streams back exactly the bytes of a multi-MiB streamed body", async () => {
  const size = 6 * 1024 * 1024 + 123;
  const sent = new Uint8Array(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    sent[i] = x >>> 24;
  }
  let offset = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (offset >= size) return c.close();
      c.enqueue(sent.slice(offset, offset + 100_000));
      offset += 100_000;
    },
  });
  await withBackend({}, async (b) => {
    const res = await fetch(`${b.url}/echo`, {
      method: "POST",
      body,
      headers: { "content-type": "application/x-test" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/x-test");
    const got = new Uint8Array(await res.arrayBuffer());
    assert.equal(got.length, size);
    assert.equal(await sha256(got), await sha256(sent));
  });
});

Deno.test("GET /stream?bytes=N returns N bytes in chunks, and rejects a bad size with 400", async () => {
  await withBackend({}, async (b) => {
    const res = await fetch(`${b.url}/stream?bytes=1000003&chunk=4096`);
    assert.equal(res.status, 200);
    const got = new Uint8Array(await res.arrayBuffer());
    assert.equal(got.length, 1_000_003);
    assert.equal(new TextDecoder().decode(got.subarray(4090, 4100)), "ijklmnopqr");
    assert.equal((await (await fetch(`${b.url}/stream?bytes=0`)).arrayBuffer()).byteLength, 0);
    const bad = await getJson(`${b.url}/stream?bytes=-5`);
    assert.equal(bad.status, 400);
    assert.match(bad.body.error ?? "", /bytes/);
  });
});

Deno.test("GET /sse sends its events one by one, the first long before the last", async () => {
  await withBackend({}, async (b) => {
    const t0 = performance.now();
    const res = await fetch(`${b.url}/sse?events=3&intervalMs=250`);
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const decoder = new TextDecoder();
    const arrivals: { at: number; text: string }[] = [];
    for await (const chunk of res.body!) {
      arrivals.push({ at: performance.now() - t0, text: decoder.decode(chunk) });
    }
    assert.equal(
      arrivals.map((a) => a.text).join(""),
      'data: {"n":1}\n\ndata: {"n":2}\n\ndata: {"n":3}\n\n',
    );
    assert.equal(arrivals[0].text, 'data: {"n":1}\n\n');
    assert.ok(arrivals.at(-1)!.at - arrivals[0].at >= 400, JSON.stringify(arrivals));
  });
});

Deno.test("closing a backend ends requests still waiting out their latency", async () => {
  const b = await startDemoBackend({ port: 0, index: 1, latencyMs: 60_000 });
  const pending = fetch(`${b.url}/slow`);
  // Once a later request on another connection has been answered, the slow one is in its wait.
  await (await fetch(`${b.url}/health`)).body?.cancel();
  await b.close();
  const res = await pending;
  assert.equal(res.status, 503);
  await res.body?.cancel();
});

Deno.test("a client that leaves during the latency wait frees the server at once", async () => {
  await withBackend({ latencyMs: 60_000 }, async (b) => {
    const ac = new AbortController();
    const pending = fetch(`${b.url}/slow`, { signal: ac.signal });
    await (await fetch(`${b.url}/health`)).body?.cancel();
    ac.abort();
    await assert.rejects(pending);
    // A graceful shutdown waits for handlers in flight: it can only finish now if the wait ended.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const winner = await Promise.race([
      b.server.shutdown().then(() => "shutdown"),
      new Promise((resolve) => timer = setTimeout(() => resolve("timeout"), 5000)),
    ]);
    clearTimeout(timer);
    assert.equal(winner, "shutdown");
  });
});

Deno.test("startDemoBackends gives each server the next port, its name, and its own value from a list", async () => {
  const bs = await startDemoBackends({
    count: 3,
    host: "127.0.0.1",
    port: 0,
    latency: [0, 1, 2],
    failRate: [0.5],
  });
  try {
    assert.deepEqual(bs.map((b) => b.name), ["backend-1", "backend-2", "backend-3"]);
    assert.deepEqual(bs.map((b) => b.settings.latencyMs), [0, 1, 2]);
    assert.deepEqual(bs.map((b) => b.settings.failRate), [0.5, 0.5, 0.5]);
    assert.equal(new Set(bs.map((b) => b.port)).size, 3);
  } finally {
    await Promise.all(bs.map((b) => b.close()));
  }
});

Deno.test("a demo backend on a port already in use fails with a sentence naming the port", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  await assert.rejects(
    startDemoBackends({ count: 1, host: "127.0.0.1", port, latency: [0], failRate: [0] }),
    (e: Error) =>
      e.message === `backend-1 cannot listen on 127.0.0.1:${port}: the port is already in use`,
  );
});

// --- the command line, as a subprocess -------------------------------------------------------

async function lb(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts", "backends", ...args],
    cwd: ROOT,
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * A port P such that P and P+1 were both free a moment ago. Candidates come from below the
 * kernel's ephemeral range (32768 up), where the suite's many client sockets do not land.
 */
function freePortPair(): number {
  for (let i = 0; i < 500; i++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    try {
      const a = Deno.listen({ hostname: "127.0.0.1", port });
      try {
        Deno.listen({ hostname: "127.0.0.1", port: port + 1 }).close();
        return port;
      } finally {
        a.close();
      }
    } catch {
      // one of the two is taken: try another pair.
    }
  }
  throw new Error("no two consecutive free ports found");
}

Deno.test("lb backends --count 0 exits 2 with one line and a hint, no stack trace", async () => {
  const { code, stderr } = await lb("--count", "0");
  assert.equal(code, 2);
  assert.deepEqual(stderr.trim().split("\n"), [
    'lb: --count must be a whole number from 1 to 100, got "0"',
    "Run 'lb backends --help' for usage.",
  ]);
});

Deno.test("lb backends exits 2 when --latency has two values for three servers", async () => {
  const { code, stderr } = await lb("--count", "3", "--latency", "5,50");
  assert.equal(code, 2);
  assert.match(stderr, /^lb: --latency has 2 values but --count is 3/);
  assert.doesNotMatch(stderr, /\bat /);
});

Deno.test("lb backends exits 2 on an out-of-range fail rate or an unknown flag", async () => {
  assert.equal((await lb("--fail-rate", "1.5")).code, 2);
  const unknown = await lb("--nope");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^lb: unknown flag --nope\n/);
});

Deno.test("lb backends --help exits 0 and describes every flag with an example", async () => {
  const { code, stdout } = await lb("--help");
  assert.equal(code, 0);
  for (const flag of ["--count", "--port", "--host", "--latency", "--fail-rate", "Examples:"]) {
    assert.ok(stdout.includes(flag), flag);
  }
});

Deno.test("lb backends on a port already in use exits 1 with a one-line error", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const { code, stderr } = await lb("--count", "1", "--port", String(port));
  assert.equal(code, 1);
  assert.equal(stderr.trim().split("\n").length, 1);
  assert.match(
    stderr,
    new RegExp(
      `^lb: backend-1 cannot listen on 127\\.0\\.0\\.1:${port}: the port is already in use`,
    ),
  );
});

Deno.test("lb backends serves on consecutive ports until SIGTERM, then exits 0", async () => {
  const port = freePortPair();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "src/main.ts",
      "backends",
      "--count",
      "2",
      "--port",
      String(port),
      "--latency",
      "5,0",
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  // A watchdog instead of sleeps: if the child never gets ready, kill it so the reads below end.
  const watchdog = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let out = "";
    while (out.split("\n").length <= 2) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    assert.equal(
      out,
      `backend-1 listening on http://127.0.0.1:${port} (latency 5ms, fail-rate 0)\n` +
        `backend-2 listening on http://127.0.0.1:${port + 1} (latency 0ms, fail-rate 0)\n`,
    );
    const { status, body } = await getJson(`http://127.0.0.1:${port + 1}/hi?there`);
    assert.equal(status, 200);
    assert.equal(body.backend, "backend-2");
    assert.equal(body.path, "/hi?there");

    child.kill("SIGTERM");
    const rest = await reader.read();
    assert.equal(rest.done, true);
    const { code } = await child.status;
    assert.equal(code, 0, await stderr);
    assert.equal(await stderr, "");
  } finally {
    clearTimeout(watchdog);
    await reader.cancel().catch(() => {});
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await stderr;
  }
});
