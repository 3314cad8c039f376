/** Admin API changes survive a restart through the state file. */
// The tests poke at JSON answers field by field.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";

const quiet = () => createLogger({ format: "json", access: false, write: () => {} });

function yamlFor(backends: DemoBackend[]): string {
  return [
    "listen: {host: 127.0.0.1, port: 0}",
    "admin: {host: 127.0.0.1, port: 0}",
    "health: {enabled: false}",
    "log: {access: false}",
    "backends:",
    ...backends.map((b) => `  - {url: "${b.url}", name: ${b.name}}`),
  ].join("\n") + "\n";
}

interface Setup {
  dir: string;
  configPath: string;
  backends: DemoBackend[];
  start(): Lb;
  close(): Promise<void>;
}

async function setup(count: number): Promise<Setup> {
  const dir = await Deno.makeTempDir();
  const backends: DemoBackend[] = [];
  for (let i = 1; i <= count; i++) backends.push(await startDemoBackend({ port: 0, index: i }));
  const configPath = `${dir}/lb.yaml`;
  await Deno.writeTextFile(configPath, yamlFor(backends));
  return {
    dir,
    configPath,
    backends,
    start: () =>
      startLb({
        config: parseConfig(Deno.readTextFileSync(configPath), configPath),
        configSource: configPath,
        logger: quiet(),
      }),
    async close() {
      await Promise.all(backends.map((b) => b.close()));
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function send(lb: Lb, method: string, path: string, body?: unknown): Promise<number> {
  const res = await fetch(lb.adminUrl + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await res.body?.cancel();
  return res.status;
}

/** The default pool's part of the state file (version 2 keeps changes per pool). */
function readState(path: string): Record<string, any> {
  const file = JSON.parse(Deno.readTextFileSync(path));
  assert.equal(file.version, 2);
  return file.pools.default ?? {};
}

Deno.test("API changes are in the state file before the 2xx, and a restart brings them back", async () => {
  const s = await setup(3);
  const extra = await startDemoBackend({ port: 0, index: 4 });
  let lb = s.start();
  try {
    const stateFile = `${s.dir}/lb.state.json`;
    assert.equal(lb.stateFile, stateFile);
    assert.throws(() => Deno.statSync(stateFile), Deno.errors.NotFound);

    assert.equal(
      await send(lb, "POST", "/api/servers", { url: extra.url, name: "extra", weight: 3 }),
      201,
    );
    assert.deepEqual(readState(stateFile).added, [
      { url: extra.url, name: "extra", weight: 3, maxConnections: 0, state: "enabled" },
    ]);
    assert.equal(await send(lb, "PATCH", "/api/servers/backend-1", { weight: 7 }), 200);
    assert.deepEqual(readState(stateFile).changed["backend-1"], { weight: 7 });
    assert.equal(await send(lb, "PATCH", "/api/servers/backend-2", { state: "disabled" }), 200);
    assert.deepEqual(readState(stateFile).changed["backend-2"], { state: "disabled" });
    assert.equal(await send(lb, "DELETE", "/api/servers/backend-3"), 202);
    assert.deepEqual(readState(stateFile).removed, ["backend-3"]);
    assert.equal(await send(lb, "PUT", "/api/strategy", { name: "least-conn" }), 200);
    assert.equal(readState(stateFile).strategy.name, "least-conn");
    // Only the state file itself in the directory: every temp file was renamed into place.
    const names = [...Deno.readDirSync(s.dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["lb.state.json", "lb.yaml"]);

    await lb.shutdown(2000);
    lb = s.start();
    const view = lb.pool.servers.map((x) => [x.id, x.weight, x.enabled]);
    assert.deepEqual(view, [["backend-1", 7, true], ["backend-2", 1, false], ["extra", 3, true]]);
    assert.equal(lb.balancer.strategy.name, "least-conn");
    const res = await fetch(lb.url + "/");
    await res.body?.cancel();
    assert.notEqual(res.headers.get("x-backend"), "backend-2");

    // Deleting the state file returns to lb.yaml.
    await lb.shutdown(2000);
    await Deno.remove(stateFile);
    lb = s.start();
    assert.deepEqual(
      lb.pool.servers.map((x) => [x.id, x.weight, x.enabled]),
      [["backend-1", 1, true], ["backend-2", 1, true], ["backend-3", 1, true]],
    );
    assert.equal(lb.balancer.strategy.name, "round-robin");
  } finally {
    await lb.shutdown(2000);
    await extra.close();
    await s.close();
  }
});

Deno.test("concurrent changes are all persisted: the file always ends equal to the running state", async () => {
  const s = await setup(2);
  const lb = s.start();
  try {
    const weights = Array.from({ length: 20 }, (_, i) => i + 2);
    const statuses = await Promise.all(
      weights.map((w, i) =>
        send(lb, "PATCH", `/api/servers/backend-${(i % 2) + 1}`, { weight: w })
      ),
    );
    assert.ok(statuses.every((st) => st === 200));
    const file = readState(lb.stateFile!);
    assert.equal(file.changed["backend-1"].weight, lb.pool.get("backend-1")!.weight);
    assert.equal(file.changed["backend-2"].weight, lb.pool.get("backend-2")!.weight);
    assert.equal([...Deno.readDirSync(s.dir)].length, 2);
  } finally {
    await lb.shutdown(2000);
    await s.close();
  }
});

Deno.test("a corrupt state file stops lb from starting with a clear one-line message", async () => {
  const s = await setup(1);
  try {
    const stateFile = `${s.dir}/lb.state.json`;
    await Deno.writeTextFile(stateFile, '{"version": 1, "added": [');
    assert.throws(
      () => s.start(),
      /the state file .*lb\.state\.json is not valid JSON .*; fix it, or delete it to return to the config file/,
    );
    await Deno.writeTextFile(stateFile, '{"version": 1, "changed": {"backend-1": {"weight": 0}}}');
    assert.throws(() => s.start(), /is not usable \(changed\.backend-1\.weight: /);

    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "src/main.ts", "serve", "--config", s.configPath],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    const err = new TextDecoder().decode(out.stderr).trim();
    assert.equal(err.split("\n").length, 1, err);
    assert.match(err, /^lb: the state file .* is not usable/);
  } finally {
    await s.close();
  }
});

Deno.test("a state file with a value lb.yaml would refuse stops lb at start, naming the file and the field", async () => {
  const s = await setup(1);
  const stateFile = `${s.dir}/lb.state.json`;
  // Each: the state file's JSON, the field it names, and the same value in lb.yaml.
  const cases: [unknown, RegExp, string][] = [
    [
      { version: 1, strategy: { name: "consistent-hash", hash: { vnodes: 0 } } },
      /strategy\.hash\.vnodes: /,
      "strategy: consistent-hash\nhash: { vnodes: 0 }",
    ],
    [
      { version: 1, strategy: { name: "maglev", hash: { key: "header:" } } },
      /strategy\.hash\.key: must be ip, path/,
      "strategy: maglev\nhash: { key: 'header:' }",
    ],
    [
      { version: 1, strategy: { name: "maglev", hash: { balanceFactor: 0.5 } } },
      /strategy\.hash\.balanceFactor: must be 0 \(off\) or greater than 1/,
      "hash: { balanceFactor: 0.5 }",
    ],
    [
      { version: 1, added: [{ url: "http://127.0.0.1:1/path" }] },
      /added\[0\]\.url: .*must be an origin only/,
      "backends: [{ url: 'http://127.0.0.1:1/path' }]",
    ],
    [
      { version: 1, added: [{ url: "http://127.0.0.1:1", weight: 1001 }] },
      /added\[0\]\.weight: must be a whole number from 1 to 1000/,
      "backends: [{ url: 'http://127.0.0.1:1', weight: 1001 }]",
    ],
    [
      { version: 1, added: [{ url: "http://127.0.0.1:1", name: "a b" }] },
      /added\[0\]\.name: may contain letters, digits/,
      "backends: [{ url: 'http://127.0.0.1:1', name: 'a b' }]",
    ],
  ];
  try {
    for (const [state, field, yaml] of cases) {
      await Deno.writeTextFile(stateFile, JSON.stringify(state));
      let message = "";
      try {
        s.start().shutdown();
      } catch (e) {
        message = (e as Error).message;
      }
      assert.match(
        message,
        /^the state file .*lb\.state\.json is not usable \(/,
        JSON.stringify(state),
      );
      assert.match(message, field);
      assert.equal(message.split("\n").length, 1);
      // lb.yaml refuses the same value: the rules have one home.
      assert.throws(() => parseConfig(yaml, "lb.yaml"), ConfigError, yaml);
    }
  } finally {
    await s.close();
  }
});

Deno.test("the state file goes where admin.stateFile says, relative to the config file", async () => {
  const s = await setup(1);
  try {
    await Deno.writeTextFile(
      s.configPath,
      Deno.readTextFileSync(s.configPath).replace(
        "admin: {host: 127.0.0.1, port: 0}",
        "admin: {host: 127.0.0.1, port: 0, stateFile: saved.json}",
      ),
    );
    const lb = s.start();
    try {
      assert.equal(lb.stateFile, `${s.dir}/saved.json`);
      assert.equal(await send(lb, "PATCH", "/api/servers/backend-1", { weight: 9 }), 200);
      assert.equal(readState(`${s.dir}/saved.json`).changed["backend-1"].weight, 9);
    } finally {
      await lb.shutdown(2000);
    }
  } finally {
    await s.close();
  }
});
