import assert from "node:assert/strict";
import { simulate } from "../../src/balancing/simulate.ts";
import { STRATEGY_NAMES } from "../../src/balancing/strategies/registry.ts";

const ROOT = new URL("../..", import.meta.url);

async function lb(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("simulate gives the same result for the same seed and a different one for another", () => {
  const a = simulate({ strategy: "p2c", requests: 2000, seed: 7 });
  const b = simulate({ strategy: "p2c", requests: 2000, seed: 7 });
  const c = simulate({ strategy: "p2c", requests: 2000, seed: 8 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.overall, c.overall);
});

Deno.test("simulate answers every request and reports shares that add up to 1", () => {
  for (const strategy of STRATEGY_NAMES) {
    const r = simulate({ strategy, requests: 3000, concurrency: 20 });
    assert.equal(r.overall.requests, 3000);
    assert.equal(r.unserved, 0);
    assert.equal(r.servers.reduce((a, s) => a + s.requests, 0), 3000);
    assert.ok(Math.abs(r.servers.reduce((a, s) => a + s.share, 0) - 1) < 1e-9);
    assert.ok(r.overall.p50 <= r.overall.p99);
  }
});

Deno.test("simulate draws latencies around each server's mean", () => {
  const r = simulate({
    strategy: "round-robin",
    latency: [10, 100],
    loadFactor: 0,
    concurrency: 1,
    requests: 4000,
  });
  const [fast, slow] = r.servers;
  // Lognormal with σ 0.5 and mean 1: median e^(-σ²/2) ≈ 0.88 of the mean.
  assert.ok(Math.abs(fast.p50 / 10 - 0.88) < 0.05, `fast p50 ${fast.p50}`);
  assert.ok(Math.abs(slow.p50 / 100 - 0.88) < 0.05, `slow p50 ${slow.p50}`);
  assert.ok(slow.p99 > 2.5 * slow.p50);
  // One request at a time: the run lasts about the sum of the means.
  assert.ok(Math.abs(r.duration / (2000 * 110) - 1) < 0.05, `duration ${r.duration}`);
});

Deno.test("simulate slows a server down as requests pile up on it", () => {
  const light = simulate({
    strategy: "round-robin",
    latency: [10],
    servers: 1,
    concurrency: 1,
    requests: 2000,
  });
  const heavy = simulate({
    strategy: "round-robin",
    latency: [10],
    servers: 1,
    concurrency: 50,
    requests: 2000,
  });
  assert.ok(
    heavy.overall.p50 > 1.5 * light.overall.p50,
    `${heavy.overall.p50} vs ${light.overall.p50}`,
  );
});

Deno.test("simulate applies latency changes after the given number of requests", () => {
  const r = simulate({
    strategy: "round-robin",
    latency: [10],
    servers: 2,
    changes: [{ after: 1000, latency: [10, 1000] }],
    requests: 2000,
    recordPicks: true,
  });
  assert.equal(r.servers[1].meanLatency, 1000);
  assert.ok(r.servers[1].p99 > 500);
  assert.equal(r.picks!.length, 2000);
});

Deno.test("lb simulate prints each server's share and latency percentiles and exits 0", async () => {
  const { code, stdout, stderr } = await lb(
    "simulate",
    "--strategy",
    "p2c",
    "--latency",
    "5,50,200",
    "--requests",
    "3000",
    "--seed",
    "3",
  );
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^p2c: 3 servers, 3000 requests, concurrency 50, seed 3/);
  assert.match(stdout, /server\s+mean ms\s+weight\s+requests\s+share\s+p50 ms\s+p99 ms/);
  for (const id of ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]) {
    assert.match(stdout, new RegExp(`^${id}\\s.*%`, "m"));
  }
  const overall = stdout.split("\n").find((l) => l.startsWith("overall"))!;
  assert.match(overall, /^overall\s+3000\s+100\.0%\s+[\d.]+\s+[\d.]+$/);
});

Deno.test("lb simulate rejects bad flags with one line and a hint, exit 2, no stack trace", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--strategy", "fastest-ever"],
      /^lb: unknown strategy "fastest-ever" \(choose one of: round-robin, .*maglev\)$/,
    ],
    [[], /^lb: missing --strategy/],
    [
      ["--strategy", "p2c", "--servers", "4", "--latency", "5,50"],
      /^lb: --latency takes 1 value or one per server \(4\), got 2$/,
    ],
    [["--strategy", "p2c", "--requests", "lots"], /^lb: --requests must be a whole number/],
    [["--strategy", "p2c", "--latency", "5,fast"], /^lb: --latency takes numbers/],
    [["--strategy", "p2c", "--warp"], /^lb: unknown flag --warp$/],
    [
      ["--strategy", "maglev", "--balance-factor", "0.5"],
      /^lb: --balance-factor must be 0 \(off\) or greater than 1/,
    ],
  ];
  const runs = await Promise.all(cases.map(([args]) => lb("simulate", ...args)));
  for (const [i, [args, message]] of cases.entries()) {
    const { code, stdout, stderr } = runs[i];
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(stdout, "");
    const lines = stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, stderr);
    assert.match(lines[0], message);
    assert.equal(lines[1], "Run 'lb simulate --help' for usage.");
  }
});

Deno.test("lb simulate --help lists the strategies and flags", async () => {
  const { code, stdout } = await lb("simulate", "--help");
  assert.equal(code, 0);
  for (const word of [...STRATEGY_NAMES, "--latency", "--concurrency", "--seed"]) {
    assert.ok(stdout.includes(word), word);
  }
});
