/** Every strategy once through a real `lb serve` process in front of real demo backends. */
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { freePort, until } from "../_stack.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

interface Run {
  /** backend name → requests it answered */
  counts: Map<string, number>;
  /** the backend that answered request i */
  byRequest: string[];
}

/**
 * Starts `lb serve --config` with `yaml` (backends appended), sends `requests` GETs at
 * `concurrency`, then SIGTERMs it and checks it exits 0.
 */
async function runThroughLb(
  backends: DemoBackend[],
  yaml: string,
  requests: number,
  concurrency: number,
  headers: (i: number) => HeadersInit = () => ({}),
): Promise<Run> {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/lb.yaml`,
    `listen: {port: ${port}}\nadmin: {enabled: false}\nlog: {access: false}\n${yaml}\n` +
      `backends:\n${
        backends.map((b, i) =>
          `  - {url: "${b.url}", name: ${b.name}, weight: ${weightOf(yaml, i)}}`
        ).join("\n")
      }\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, "serve", "--config", `${dir}/lb.yaml`],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) out += c;
  })();
  const err = new Response(child.stderr).text();
  const counts = new Map<string, number>();
  const byRequest: string[] = [];
  try {
    await until(() => out.includes("traffic listening"), "lb to listen", 15_000);
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < requests) {
        const i = next++;
        const res = await fetch(`http://127.0.0.1:${port}/e2e`, { headers: headers(i) });
        assert.equal(res.status, 200);
        const name = (await res.json()).backend as string;
        counts.set(name, (counts.get(name) ?? 0) + 1);
        byRequest[i] = name;
      }
    }));
  } finally {
    child.kill("SIGTERM");
  }
  assert.equal((await child.status).code, 0, await err);
  await reading;
  await Deno.remove(dir, { recursive: true });
  return { counts, byRequest };
}

/** Weights ride along in the yaml as a comment: `# weights: 3,1,1`. */
function weightOf(yaml: string, i: number): number {
  const m = /# weights: ([\d,]+)/.exec(yaml);
  return m ? Number(m[1].split(",")[i]) : 1;
}

async function withBackends(latency: number[], fn: (b: DemoBackend[]) => Promise<void>) {
  const backends: DemoBackend[] = [];
  for (let i = 0; i < latency.length; i++) {
    backends.push(await startDemoBackend({ port: 0, index: i + 1, latencyMs: latency[i] }));
  }
  try {
    await fn(backends);
  } finally {
    await Promise.all(backends.map((b) => b.close()));
  }
}

const n = (r: Run, name: string) => r.counts.get(name) ?? 0;

Deno.test("round-robin through lb serve: 60 requests, 20 to each backend", async () => {
  await withBackends([0, 0, 0], async (b) => {
    const r = await runThroughLb(b, "strategy: round-robin", 60, 1);
    assert.deepEqual([n(r, "backend-1"), n(r, "backend-2"), n(r, "backend-3")], [20, 20, 20]);
  });
});

Deno.test("weighted-round-robin through lb serve: weights 3,1,1 give 36, 12, 12 of 60", async () => {
  await withBackends([0, 0, 0], async (b) => {
    const r = await runThroughLb(b, "strategy: weighted-round-robin\n# weights: 3,1,1", 60, 1);
    assert.deepEqual([n(r, "backend-1"), n(r, "backend-2"), n(r, "backend-3")], [36, 12, 12]);
  });
});

for (const strategy of ["least-conn", "fastest", "p2c"]) {
  Deno.test(`${strategy} through lb serve: a slow backend gets fewer requests than the fast ones`, async () => {
    await withBackends([0, 0, 150], async (b) => {
      const r = await runThroughLb(b, `strategy: ${strategy}`, 90, 6);
      const slow = n(r, "backend-3");
      assert.ok(
        slow < n(r, "backend-1") && slow < n(r, "backend-2"),
        `shares ${JSON.stringify([...r.counts])}`,
      );
    });
  });
}

Deno.test("random through lb serve: every backend gets some of 90 requests", async () => {
  await withBackends([0, 0, 0], async (b) => {
    const r = await runThroughLb(b, "strategy: random", 90, 3);
    for (const name of ["backend-1", "backend-2", "backend-3"]) assert.ok(n(r, name) > 5, name);
  });
});

for (const strategy of ["consistent-hash", "maglev"]) {
  Deno.test(`${strategy} through lb serve: a user always lands on the same backend, users spread`, async () => {
    await withBackends([0, 0, 0], async (b) => {
      // Each of 31 users sends twice (requests u and u + 31; 31 is not a multiple of 3, so a
      // rotation would move every user).
      const r = await runThroughLb(
        b,
        `strategy: ${strategy}\nhash: {key: "header:x-user"}`,
        62,
        1,
        (i) => ({ "x-user": `user-${i % 31}` }),
      );
      for (let u = 0; u < 31; u++) {
        assert.equal(r.byRequest[u + 31], r.byRequest[u], `user-${u} moved`);
      }
      assert.ok(r.counts.size >= 2, "users spread over the backends");
    });
  });
}
