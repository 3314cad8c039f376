/**
 * Several lb instances sharing one view through a real redis-server: a change through any
 * instance's admin API reaches the others (the time it takes is printed), added and removed
 * servers and strategy switches included.
 */
import assert from "node:assert/strict";
import { call, until } from "../_stack.ts";
import { serverOf, startCluster, untilConnected } from "./_cluster.ts";

Deno.test("a change through one instance's API reaches the other two", async () => {
  const rig = await startCluster(3);
  try {
    const [a, b, c] = rig.instances;
    await untilConnected(rig.instances);
    const t0 = performance.now();
    const r = await call(a.admin, "PATCH", "/api/servers/backend-2", {
      weight: 7,
      state: "draining",
    });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    for (const i of [b, c]) {
      await until(async () => (await serverOf(i, "backend-2"))?.weight === 7, "the weight", 5000);
    }
    console.log(
      `weight and drain reached 2 instances in ${(performance.now() - t0).toFixed(0)} ms`,
    );
    assert.equal((await serverOf(c, "backend-2")).state, "draining");

    const added = await call(b.admin, "POST", "/api/servers", {
      url: "http://127.0.0.1:1",
      name: "extra",
      weight: 3,
    });
    assert.equal(added.status, 201, JSON.stringify(added.json));
    for (const i of [a, c]) {
      await until(async () => (await serverOf(i, "extra"))?.weight === 3, "the new server", 5000);
    }
    const gone = await call(c.admin, "DELETE", "/api/servers/backend-1");
    assert.equal(gone.status, 202, JSON.stringify(gone.json));
    for (const i of [a, b]) {
      await until(async () => !(await serverOf(i, "backend-1")), "backend-1 to go", 5000);
    }
    const s = await call(a.admin, "PUT", "/api/strategy", { name: "least-conn" });
    assert.equal(s.status, 200, JSON.stringify(s.json));
    for (const i of [b, c]) {
      await until(
        async () => (await call(i.admin, "GET", "/api/strategy")).json.name === "least-conn",
        "the strategy",
        5000,
      );
    }
    // Every instance's state file mirrors the view (a restart without Redis starts from it).
    for (const i of rig.instances) {
      const state = JSON.parse(await Deno.readTextFile(i.stateFile));
      await until(
        async () => {
          const st = JSON.parse(await Deno.readTextFile(i.stateFile));
          return st.pools.default?.strategy?.name === "least-conn";
        },
        "the state file",
        5000,
      );
      assert.ok(state.pools.default);
    }
    const view = await call(b.admin, "GET", "/api/cluster");
    assert.equal(view.json.enabled, true);
    assert.equal(view.json.members.length, 3);
    assert.ok(view.json.revision >= 5, JSON.stringify(view.json));
  } finally {
    await rig.close();
  }
});

Deno.test("changes to different servers made at the same moment on two instances both survive", async () => {
  const rig = await startCluster(2, { backends: 3 });
  try {
    const [a, b] = rig.instances;
    await untilConnected(rig.instances);
    const rounds = 10;
    for (let n = 1; n <= rounds; n++) {
      const [ra, rb] = await Promise.all([
        call(a.admin, "PATCH", "/api/servers/backend-1", { weight: n }),
        call(b.admin, "PATCH", "/api/servers/backend-2", { weight: n + 100 }),
      ]);
      assert.equal(ra.status, 200);
      assert.equal(rb.status, 200);
    }
    for (const i of rig.instances) {
      await until(
        async () => {
          const [s1, s2] = [await serverOf(i, "backend-1"), await serverOf(i, "backend-2")];
          return s1.weight === rounds && s2.weight === rounds + 100;
        },
        "both last writes everywhere",
        5000,
      );
    }
  } finally {
    await rig.close();
  }
});

Deno.test("a sticky cookie set by one instance is honoured by the other: they share the generated secret", async () => {
  const rig = await startCluster(2, { backends: 3, extra: "sticky: { cookie: lbsid }" });
  try {
    const [a, b] = rig.instances;
    await untilConnected(rig.instances);
    await until(
      () => a.lb.pools.stickySecret === b.lb.pools.stickySecret,
      "one secret on both",
      5000,
    );
    const first = await fetch(a.url + "/");
    const backend = (await first.json()).backend;
    const cookie = first.headers.get("set-cookie")!.split(";")[0];
    assert.match(cookie, /^lbsid=/);
    for (let i = 0; i < 10; i++) {
      const r = await fetch(b.url + "/", { headers: { cookie } });
      assert.equal(
        (await r.json()).backend,
        backend,
        "b sends the cookie's client to the same server",
      );
      assert.equal(r.headers.get("set-cookie"), null, "and keeps the cookie it knows");
    }
  } finally {
    await rig.close();
  }
});
