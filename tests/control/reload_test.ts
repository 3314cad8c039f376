/** Config reload: in-process through lb.reload, and `lb serve` with SIGHUP and --watch. */
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { parseConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { eachLine, until } from "../_stack.ts";

interface LogLine {
  type: string;
  kind?: string;
  message: string;
  [k: string]: unknown;
}

function yaml(backends: { url: string; name: string; weight?: number }[], more = ""): string {
  return [
    "listen: {host: 127.0.0.1, port: 0}",
    "admin: {host: 127.0.0.1, port: 0}",
    "health: {enabled: false}",
    "log: {access: false}",
    "backends:",
    ...backends.map((b) => `  - {url: "${b.url}", name: ${b.name}, weight: ${b.weight ?? 1}}`),
    more,
  ].join("\n") + "\n";
}

async function backends(n: number, latencyMs = 0): Promise<DemoBackend[]> {
  const out: DemoBackend[] = [];
  for (let i = 1; i <= n; i++) out.push(await startDemoBackend({ port: 0, index: i, latencyMs }));
  return out;
}

function capture(): { log: LogLine[]; logger: ReturnType<typeof createLogger> } {
  const log: LogLine[] = [];
  return {
    log,
    logger: createLogger({ format: "json", access: false, write: (l) => log.push(JSON.parse(l)) }),
  };
}

async function hitIds(lb: Lb, n: number): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const res = await fetch(lb.url + "/");
    await res.body?.cancel();
    seen.add(res.headers.get("x-backend")!);
  }
  return seen;
}

Deno.test("a reload adds, drains and removes, and re-weights servers and switches strategy, without dropping in-flight requests", async () => {
  const [a] = await backends(1, 400);
  const [, b, c] = await backends(3);
  const { log, logger } = capture();
  const lb = startLb({ config: parseConfig(yaml([{ url: a.url, name: "a" }]), "lb.yaml"), logger });
  try {
    const slow = fetch(lb.url + "/slow");
    await until(() => lb.pool.get("a")!.inflight === 1, "the request to a to be in flight");

    const r1 = await lb.reload(
      parseConfig(
        yaml([{ url: b.url, name: "b", weight: 2 }, { url: c.url, name: "c" }]),
        "lb.yaml",
      ),
      "test",
    );
    assert.equal(r1.ok, true);
    assert.deepEqual(r1.changes, [
      "removing a (draining)",
      `added b (${b.url}, weight 2)`,
      `added c (${c.url}, weight 1)`,
    ]);
    assert.equal(lb.pool.get("a")!.draining, true);
    assert.deepEqual(await hitIds(lb, 6), new Set(["backend-2", "backend-3"]));

    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal((await res.json()).backend, "backend-1");
    await until(() => lb.pool.get("a") === undefined, "a to leave the pool");

    const r2 = await lb.reload(
      parseConfig(
        yaml(
          [{ url: b.url, name: "b", weight: 3 }, { url: c.url, name: "c" }],
          "strategy: least-conn",
        ),
        "lb.yaml",
      ),
      "test",
    );
    assert.equal(r2.ok, true);
    assert.deepEqual(r2.changes, ["b weight 2 → 3", "strategy round-robin → least-conn"]);
    assert.equal(lb.pool.get("b")!.weight, 3);
    assert.equal(lb.balancer.strategy.name, "least-conn");
    assert.equal(lb.config.strategy, "least-conn");
    const line = log.find((l) =>
      l.kind === "reload" && /strategy round-robin → least-conn/.test(l.message)
    );
    assert.ok(line, "no reload event line");
    assert.match(await lb.metrics.text(), /lb_config_reloads_total\{result="success"\} 2/);
  } finally {
    await lb.shutdown(2000);
    await Promise.all([a, b, c].map((x) => x.close()));
  }
});

Deno.test("an invalid config is rejected with its problems logged, and the running config is kept", async () => {
  const [a, b] = await backends(2);
  const { log, logger } = capture();
  const lb = startLb({
    config: parseConfig(yaml([{ url: a.url, name: "a" }, { url: b.url, name: "b" }]), "lb.yaml"),
    logger,
  });
  try {
    const r = await lb.reload(
      () => parseConfig(`strategy: fastest-ever\nbackends: [{url: "ftp://x"}]\n`, "lb.yaml"),
      "SIGHUP",
    );
    assert.equal(r.ok, false);
    assert.ok(
      r.problems.some((p) => /^lb\.yaml: strategy: must be one of/.test(p)),
      r.problems.join("\n"),
    );
    assert.ok(
      r.problems.some((p) => /^lb\.yaml: backends\[0\]\.url: /.test(p)),
      r.problems.join("\n"),
    );
    const err = log.find((l) => l.type === "error");
    assert.ok(err);
    assert.match(
      err.message,
      /^reload \(SIGHUP\) rejected; the running config is kept: lb\.yaml: /,
    );
    assert.deepEqual(lb.pool.servers.map((s) => s.id), ["a", "b"]);
    assert.equal(lb.balancer.strategy.name, "round-robin");
    assert.deepEqual(await hitIds(lb, 4), new Set(["backend-1", "backend-2"]));
    assert.match(await lb.metrics.text(), /lb_config_reloads_total\{result="failure"\} 1/);
  } finally {
    await lb.shutdown(2000);
    await Promise.all([a, b].map((x) => x.close()));
  }
});

Deno.test("a changed listen address is logged as needing a restart; the servers still reload", async () => {
  const [a, b] = await backends(2);
  const { log, logger } = capture();
  const lb = startLb({ config: parseConfig(yaml([{ url: a.url, name: "a" }]), "lb.yaml"), logger });
  try {
    const next = yaml([{ url: a.url, name: "a" }, { url: b.url, name: "b" }])
      .replace("listen: {host: 127.0.0.1, port: 0}", "listen: {host: 127.0.0.1, port: 18123}");
    const r = await lb.reload(parseConfig(next, "lb.yaml"), "test");
    assert.equal(r.ok, true);
    assert.deepEqual(r.needsRestart, ["listen"]);
    assert.ok(lb.pool.get("b"));
    assert.ok(
      log.some((l) => l.kind === "reload" && /listen take effect after a restart/.test(l.message)),
    );
  } finally {
    await lb.shutdown(2000);
    await Promise.all([a, b].map((x) => x.close()));
  }
});

Deno.test("a reload keeps the changes made through the admin API (the state file applies over the new file)", async () => {
  const [a, b] = await backends(2);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/lb.yaml`;
  await Deno.writeTextFile(path, yaml([{ url: a.url, name: "a" }]));
  const lb = startLb({
    config: parseConfig(Deno.readTextFileSync(path), path),
    configSource: path,
    logger: capture().logger,
  });
  try {
    const res = await fetch(lb.adminUrl + "/api/servers/a", {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ weight: 5 }),
    });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    await Deno.writeTextFile(path, yaml([{ url: a.url, name: "a" }, { url: b.url, name: "b" }]));
    const r = await lb.reload(() => parseConfig(Deno.readTextFileSync(path), path), "test");
    assert.equal(r.ok, true);
    assert.equal(lb.pool.get("a")!.weight, 5);
    assert.equal(lb.pool.get("b")!.weight, 1);
  } finally {
    await lb.shutdown(2000);
    await Promise.all([a, b].map((x) => x.close()));
    await Deno.remove(dir, { recursive: true });
  }
});

/** `lb serve` as a subprocess, its stdout parsed as JSON lines. */
function serve(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "src/main.ts", "serve", "--log-format", "json", ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: LogLine[] = [];
  const pump = eachLine(child.stdout, (line) => lines.push(JSON.parse(line)));
  return {
    child,
    lines,
    waitFor: (pred: (l: LogLine) => boolean, what: string) =>
      until(() => lines.find(pred), what, 15_000) as Promise<LogLine>,
    async stop(): Promise<number> {
      child.kill("SIGTERM");
      const st = await child.status;
      await pump;
      return st.code;
    },
  };
}

async function serverIds(admin: string): Promise<string[]> {
  const res = await fetch(admin + "/api/servers");
  return (await res.json()).servers.map((s: { id: string }) => s.id);
}

Deno.test("lb serve reloads lb.yaml on SIGHUP, and rejects an invalid file keeping the running config", async () => {
  const [a, b] = await backends(2);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/lb.yaml`;
  await Deno.writeTextFile(path, yaml([{ url: a.url, name: "a" }]));
  const lb = serve(["--config", path]);
  try {
    const admin = (await lb.waitFor((l) => l.listener === "admin", "the admin listener"))
      .url as string;
    assert.deepEqual(await serverIds(admin), ["a"]);

    await Deno.writeTextFile(path, yaml([{ url: a.url, name: "a" }, { url: b.url, name: "b" }]));
    lb.child.kill("SIGHUP");
    await lb.waitFor((l) => l.kind === "reload", "the reload line");
    assert.deepEqual(await serverIds(admin), ["a", "b"]);

    await Deno.writeTextFile(
      path,
      "backends: [{url: 'http://127.0.0.1:1', weight: -2}]\nnope: 1\n",
    );
    lb.child.kill("SIGHUP");
    const err = await lb.waitFor((l) => l.type === "error", "the rejection line");
    assert.match(err.message, /rejected; the running config is kept: .*weight.*unknown key "nope"/);
    assert.deepEqual(await serverIds(admin), ["a", "b"]);
  } finally {
    assert.equal(await lb.stop(), 0);
    await Promise.all([a, b].map((x) => x.close()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lb serve --watch reloads when lb.yaml changes", async () => {
  const [a, b] = await backends(2);
  const dir = await Deno.makeTempDir();
  const path = `${dir}/lb.yaml`;
  await Deno.writeTextFile(path, yaml([{ url: a.url, name: "a" }]));
  const lb = serve(["--config", path, "--watch"]);
  try {
    const admin = (await lb.waitFor((l) => l.listener === "admin", "the admin listener"))
      .url as string;
    await lb.waitFor((l) => l.kind === "watch", "the watch line");
    // Saved the way editors do: a new file renamed over the old one.
    await Deno.writeTextFile(
      `${path}.tmp`,
      yaml([{ url: a.url, name: "a", weight: 4 }, { url: b.url, name: "b" }]),
    );
    await Deno.rename(`${path}.tmp`, path);
    await lb.waitFor((l) => l.kind === "reload", "the reload line");
    assert.deepEqual(await serverIds(admin), ["a", "b"]);
    const res = await fetch(admin + "/api/servers/a");
    assert.equal((await res.json()).weight, 4);
  } finally {
    assert.equal(await lb.stop(), 0);
    await Promise.all([a, b].map((x) => x.close()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lb serve --watch without a config file is a usage error", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${Deno.cwd()}/src/main.ts`, "serve", "--watch"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    assert.match(new TextDecoder().decode(out.stderr), /^lb: --watch needs a config file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
