/** GET /events: Server-Sent Events with snapshots and state changes. */
// The tests poke at JSON answers field by field.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { Control } from "../../src/control/control.ts";
import { EventHub, MAX_CLIENTS } from "../../src/admin/events.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { resolvePools, resolveRoutes } from "../../src/config/pools.ts";
import { Pools } from "../../src/routing/pools.ts";
import { testConfig, until } from "../_stack.ts";

const quiet = () => createLogger({ format: "json", access: false, write: () => {} });

/** What an EventHub is built on: one pool of one server, and its control. */
function hubParts() {
  const config = testConfig(["http://10.0.0.1:80"]);
  const pools = new Pools(resolvePools(config), resolveRoutes(config), "a-test-secret-of-16+");
  const control = new Control({ pools, config, logger: quiet() });
  return { pool: pools.list[0].servers, pools, control };
}

interface SseEvent {
  event: string;
  data: any;
}

/** Reads SSE frames from a response body. */
function sseReader(body: ReadableStream<Uint8Array>) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const events: SseEvent[] = [];
  let ended = false;
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) !== -1) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = /^event: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
      }
    }
    ended = true;
  })();
  return {
    events,
    get ended() {
      return ended;
    },
    async cancel() {
      await reader.cancel().catch(() => {});
      await pump;
    },
    done: pump,
  };
}

async function start(): Promise<{ lb: Lb; b: DemoBackend[]; close(): Promise<void> }> {
  const b = [
    await startDemoBackend({ port: 0, index: 1 }),
    await startDemoBackend({ port: 0, index: 2 }),
  ];
  const lb = startLb({
    logger: quiet(),
    config: testConfig([], {
      backends: b.map((x) => ({ url: x.url, name: x.name })),
      admin: { enabled: true, host: "127.0.0.1", port: 0 },
    }),
  });
  return {
    lb,
    b,
    async close() {
      await lb.shutdown(2000);
      await Promise.all(b.map((x) => x.close()));
    },
  };
}

Deno.test("/events sends history and a snapshot at once, a snapshot every second, and each state change as it happens", async () => {
  const st = await start();
  try {
    const res = await fetch(st.lb.adminUrl + "/events");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const sse = sseReader(res.body!);
    try {
      await until(() => sse.events.length >= 2, "the first events");
      assert.equal(sse.events[0].event, "history");
      assert.ok(Array.isArray(sse.events[0].data));
      assert.equal(sse.events[1].event, "snapshot");
      const snap = sse.events[1].data;
      assert.deepEqual(snap.servers.map((s: any) => s.id), ["backend-1", "backend-2"]);
      assert.equal(snap.strategy.name, "round-robin");
      assert.equal(snap.servers[0].state, "healthy");

      const res2 = await fetch(st.lb.adminUrl + "/api/servers/backend-2", {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ state: "draining" }),
      });
      assert.equal(res2.status, 200);
      await res2.body?.cancel();
      const change = (await until(
        () => sse.events.find((e) => e.event === "state"),
        "the state event",
      ))!;
      assert.equal(change.data.server, "backend-2");
      assert.equal(change.data.from, "healthy");
      assert.equal(change.data.to, "draining");
      assert.match(change.data.reason, /admin/);

      // The periodic snapshots: at least two more arrive within a few seconds.
      const before = sse.events.filter((e) => e.event === "snapshot").length;
      await until(
        () => sse.events.filter((e) => e.event === "snapshot").length >= before + 2,
        "two periodic snapshots",
        5000,
      );
      const last = sse.events.filter((e) => e.event === "snapshot").at(-1)!.data;
      assert.equal(last.servers[1].state, "draining");
    } finally {
      await sse.cancel();
    }
  } finally {
    await st.close();
  }
});

Deno.test("shutdown ends open /events streams instead of waiting for them", async () => {
  const st = await start();
  const res = await fetch(st.lb.adminUrl + "/events");
  const sse = sseReader(res.body!);
  try {
    await until(() => sse.events.length >= 2, "the first events");
    const inTime = await st.lb.shutdown(2000);
    assert.equal(inTime, true);
    await until(() => sse.ended, "the stream to end");
  } finally {
    await sse.cancel();
    await st.close();
  }
});

Deno.test("the event hub forgets a client that leaves and stops its timer on close", async () => {
  const { pool, pools, control } = hubParts();
  const hub = new EventHub({ control, version: "test", startedAt: Date.now(), intervalMs: 20 });
  try {
    const a = sseReader(hub.response().body!);
    const b = sseReader(hub.response().body!);
    await until(() => a.events.length >= 3 && b.events.length >= 3, "periodic snapshots");
    assert.equal(hub.clients, 2);
    await a.cancel();
    assert.equal(hub.clients, 1);
    pool.setAdminState(pool.servers[0], "disabled");
    await until(
      () => b.events.some((e) => e.event === "state" && e.data.to === "disabled"),
      "the state event",
    );
    hub.close();
    await until(() => b.ended, "the remaining stream to end");
    assert.equal(hub.clients, 0);
    await b.cancel();
  } finally {
    hub.close();
    control.close();
    await pools.close();
  }
});

Deno.test("the event hub refuses streams beyond its limit with 503", async () => {
  const { pools, control } = hubParts();
  const hub = new EventHub({ control, version: "test", startedAt: Date.now() });
  const open: Response[] = [];
  try {
    for (let i = 0; i < MAX_CLIENTS; i++) open.push(hub.response());
    assert.equal(hub.clients, MAX_CLIENTS);
    const refused = hub.response();
    assert.equal(refused.status, 503);
    assert.match((await refused.json()).error.message, /at most 64 \/events streams/);
    await open.pop()!.body!.cancel();
    const again = hub.response();
    assert.equal(again.status, 200);
    open.push(again);
  } finally {
    await Promise.all(open.map((r) => r.body!.cancel()));
    hub.close();
    control.close();
    await pools.close();
  }
});

Deno.test("a snapshot's routesVersion changes when the routing table is replaced, and only then", async () => {
  const { pools, control } = hubParts();
  const hub = new EventHub({ control, version: "test", startedAt: Date.now(), intervalMs: 60_000 });
  try {
    const first = hub.snapshot().routesVersion;
    assert.equal(hub.snapshot().routesVersion, first);
    pools.setRoutes([
      {
        name: "api",
        match: { path: "/api" },
        pool: "default",
        stripPrefix: false,
        headers: {
          request: { set: {}, remove: [] },
          response: { set: {}, remove: [] },
        },
      },
    ]);
    const second = hub.snapshot().routesVersion;
    assert.notEqual(second, first);
    assert.equal(hub.snapshot().routesVersion, second);
  } finally {
    hub.close();
    control.close();
    await pools.close();
  }
});
