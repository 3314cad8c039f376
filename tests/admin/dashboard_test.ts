/**
 * The dashboard in a real browser: headless Chromium (Debian package `chromium`) driven by
 * playwright-core opens the page of a running lb under load, sees three servers, drains
 * one with a click, and sees the traffic move; with two pools it sees each pool and the
 * routes, drains a server of one pool, switches the other's strategy and adds a server.
 * Saves tests/artifacts/dashboard.png and tests/artifacts/dashboard_pools.png.
 */
// The tests poke at JSON answers field by field.
// deno-lint-ignore-file no-explicit-any
import assert from "node:assert/strict";
import type { Browser } from "playwright-core";
import { assertChromium, launch, openPage } from "./_browser.ts";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { validateConfig } from "../../src/config/load.ts";
import { type Lb, startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { testConfig, until } from "../_stack.ts";

/** How many samples the `history` event of a fresh /events stream holds. */
async function historyLength(adminUrl: string): Promise<number> {
  const res = await fetch(adminUrl + "/events");
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const m = /^event: history\ndata: (.*)\n\n/m.exec(buf);
      if (m) return JSON.parse(m[1]).length;
      const { value, done } = await reader.read();
      if (done) throw new Error("/events ended before its history event");
      buf += value;
    }
  } finally {
    await reader.cancel();
  }
}

/** Clients in a loop, each on its own path, until `stop()`. */
function loadOn(lb: Lb, paths: string[]) {
  let loading = true;
  const done = Promise.all(paths.map(async (path) => {
    while (loading) {
      try {
        const res = await fetch(lb.url + path);
        await res.body?.cancel();
      } catch {
        // lb shutting down at the end of the test
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }));
  return () => {
    loading = false;
    return done;
  };
}

Deno.test({
  name: "the dashboard shows three live servers, drains one with a click, and the traffic moves",
  async fn() {
    await assertChromium();
    const backends: DemoBackend[] = [];
    for (let i = 1; i <= 3; i++) {
      backends.push(await startDemoBackend({ port: 0, index: i, latencyMs: 2 }));
    }
    backends[2].settings.latencyMs = 15;
    const lb = startLb({
      logger: createLogger({ format: "json", access: false, write: () => {} }),
      config: testConfig([], {
        backends: backends.map((b) => ({ url: b.url, name: b.name })),
        admin: { enabled: true, host: "127.0.0.1", port: 0 },
      }),
    });
    const pool = lb.pool;
    const count = (id: string) => pool.get(id)!.requests;

    // Load: two clients in a loop, each request a fresh short exchange.
    const stopLoad = loadOn(lb, ["/work", "/work"]);

    let browser: Browser | undefined;
    try {
      browser = await launch();
      const { context, page, problems } = await openPage(browser, lb.adminUrl + "/");

      // Three servers, live: every row's req/s climbs above zero.
      const rows = page.locator("#servers tbody tr");
      await rows.nth(2).waitFor({ timeout: 10_000 });
      assert.equal(await rows.count(), 3);
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push(await rows.nth(i).getAttribute("data-id"));
      assert.deepEqual(ids, ["backend-1", "backend-2", "backend-3"]);
      const rps = (id: string) =>
        page.locator(`tr[data-id="${id}"] td[data-col="rps"]`).textContent().then(Number);
      await until(
        async () =>
          (await rps("backend-1")) > 0 && (await rps("backend-2")) > 0 &&
          (await rps("backend-3")) > 0,
        "req/s above zero for every server on the page",
        10_000,
      );
      assert.equal(await page.locator("#conn-text").textContent(), "live");
      // One pool named default looks as it did before pools: no pool name, no routes card
      // (its one route is the catch-all), no pool choice when adding a server.
      assert.equal(await page.locator("section.pool h2").textContent(), "Servers");
      assert.equal(await page.locator("#routes-card").isHidden(), true);
      assert.equal(await page.locator("#add-pool-label").isHidden(), true);

      // Drain backend-2 with a click.
      await page.locator('tr[data-id="backend-2"] button[data-action="drain"]').click();
      await page.locator('tr[data-id="backend-2"][data-state="draining"]').waitFor({
        timeout: 5000,
      });
      assert.equal(await page.locator('tr[data-id="backend-2"] .pill').textContent(), "draining");
      assert.equal(pool.get("backend-2")!.draining, true);

      // The API: backend-2's counter stops while the others keep growing.
      const before = { b1: count("backend-1"), b2: count("backend-2"), b3: count("backend-3") };
      await until(
        () => count("backend-1") >= before.b1 + 20 && count("backend-3") >= before.b3 + 20,
        "the other servers to take more requests",
        10_000,
      );
      assert.equal(count("backend-2"), before.b2, "the drained server still got requests");
      const api = await (await fetch(lb.adminUrl + "/api/servers")).json();
      assert.equal(api.servers[1].state, "draining");
      assert.equal(api.servers[1].requests, before.b2);

      // The page: backend-2's req/s falls to zero while the others stay above it.
      await until(
        async () =>
          (await rps("backend-2")) === 0 && (await rps("backend-1")) > 0 &&
          (await rps("backend-3")) > 0,
        "the page to show the traffic moving off backend-2",
        10_000,
      );
      // A recent-events line for the drain.
      const events = await page.locator("#events li").allTextContents();
      assert.ok(events.some((t) => /backend-2 healthy → draining/.test(t)), events.join("\n"));
      // The chart has a line per server.
      assert.equal(await page.locator("#chart polyline").count(), 3);

      await Deno.mkdir("tests/artifacts", { recursive: true });
      await page.screenshot({ path: "tests/artifacts/dashboard.png", fullPage: true });
      assert.deepEqual(problems, []);
      await context.close();
    } finally {
      await browser?.close();
      await stopLoad();
      await lb.shutdown(2000);
      await Promise.all(backends.map((b) => b.close()));
    }
  },
});

Deno.test({
  name:
    "the dashboard shows each pool and the routes, drains a server of one pool and switches the other's strategy",
  async fn() {
    await assertChromium();
    const backends: DemoBackend[] = [];
    for (let i = 1; i <= 5; i++) {
      backends.push(await startDemoBackend({ port: 0, index: i, latencyMs: 2 }));
    }
    // Both pools have servers named one and two: the page must keep them apart.
    const server = (i: number, name: string) => ({ url: backends[i].url, name });
    const lb = startLb({
      logger: createLogger({ format: "json", access: false, write: () => {} }),
      config: validateConfig({
        listen: { host: "127.0.0.1", port: 0 },
        admin: { enabled: true, host: "127.0.0.1", port: 0 },
        log: { access: false, format: "json" },
        health: { enabled: false },
        pools: {
          api: { backends: [server(0, "one"), server(1, "two")] },
          web: { backends: [server(2, "one"), server(3, "two")], sticky: { cookie: "lb_web" } },
        },
        routes: [
          { name: "api", match: { path: "/api" }, pool: "api", stripPrefix: true },
          { name: "web", pool: "web" },
        ],
      }, "test"),
    });
    const count = (pool: string, id: string) => lb.pools.get(pool)!.servers.get(id)!.requests;
    const adminJson = async (path: string) => await (await fetch(lb.adminUrl + path)).json();
    const stopLoad = loadOn(lb, ["/api/work", "/api/work", "/work", "/work"]);

    let browser: Browser | undefined;
    try {
      browser = await launch();
      // Some seconds of history under load before the page opens.
      await until(
        async () => {
          if ((await historyLength(lb.adminUrl!)) >= 5) return true;
          await new Promise((r) => setTimeout(r, 250)); // a sample a second: no need to hurry
          return false;
        },
        "five history samples",
        10_000,
      );
      const { context, page, problems } = await openPage(browser, lb.adminUrl + "/");
      const row = (pool: string, id: string) => `tr[data-pool="${pool}"][data-id="${id}"]`;
      const rps = (pool: string, id: string) =>
        page.locator(`${row(pool, id)} td[data-col="rps"]`).textContent().then(Number);

      await page.locator(row("web", "two")).waitFor({ timeout: 10_000 });
      // The history joins the live series (both keyed pool/id): at once a line per server
      // with its past seconds, not only what arrived since the page opened.
      const linePoints = await page.locator("#chart polyline").evaluateAll((ls) =>
        ls.map((l) => l.getAttribute("points")!.split(" ").length)
      );
      assert.equal(linePoints.length, 4, `lines: ${linePoints}`);
      assert.ok(linePoints.every((n) => n >= 4), `points per line: ${linePoints}`);

      // A card per pool, in config order, each with its own two servers, all live.
      const cards = page.locator("#servers section.pool");
      assert.equal(await cards.count(), 2);
      assert.deepEqual(
        [
          await cards.nth(0).getAttribute("data-pool"),
          await cards.nth(1).getAttribute("data-pool"),
        ],
        ["api", "web"],
      );
      for (const pool of ["api", "web"]) {
        const card = page.locator(`section.pool[data-pool="${pool}"]`);
        assert.match(
          (await card.locator("h2").textContent())!,
          new RegExp(`^Pool ${pool} · 2 servers$`),
        );
        const ids = await card.locator("tbody tr").evaluateAll((trs) =>
          trs.map((tr) => tr.getAttribute("data-id"))
        );
        assert.deepEqual(ids, ["one", "two"]);
        assert.equal(await card.locator(".strategy select").inputValue(), "round-robin");
      }
      assert.equal(await page.locator("#pool-web .sticky").textContent(), "sticky · cookie lb_web");
      assert.equal(await page.locator("#pool-api .sticky").isHidden(), true);
      await until(
        async () => {
          for (
            const [pool, id] of [["api", "one"], ["api", "two"], ["web", "one"], ["web", "two"]]
          ) {
            if (!((await rps(pool, id)) > 0)) return false;
          }
          return true;
        },
        "req/s above zero for all four servers on the page",
        10_000,
      );
      assert.deepEqual(await page.locator("#legend span").allTextContents(), [
        "api/one",
        "api/two",
        "web/one",
        "web/two",
      ]);

      // The routing table: number, name, match, pool.
      await page.locator("#routes-card").waitFor({ state: "visible", timeout: 5000 });
      const routes = await page.locator("#routes tbody tr").evaluateAll((trs) =>
        trs.map((tr) => [...tr.children].map((td) => td.textContent))
      );
      assert.deepEqual(routes, [
        ["1", "api", "path /api*(strip prefix)", "api"],
        ["2", "web", "every request", "web"],
      ]);

      // Drain web/one with a click: only that row changes.
      await page.locator(`${row("web", "one")} button[data-action="drain"]`).click();
      await page.locator(`${row("web", "one")}[data-state="draining"]`).waitFor({ timeout: 5000 });
      assert.equal(await page.locator(`${row("web", "one")} .pill`).textContent(), "draining");
      assert.equal(await page.locator(`${row("api", "one")} .pill`).textContent(), "healthy");
      const web = await adminJson("/api/pools/web/servers");
      assert.deepEqual(web.servers.map((s: any) => [s.id, s.state]), [
        ["one", "draining"],
        ["two", "healthy"],
      ]);
      // Pool api is untouched: both servers healthy, both still taking requests.
      const api = await adminJson("/api/pools/api/servers");
      assert.deepEqual(api.servers.map((s: any) => [s.id, s.state]), [
        ["one", "healthy"],
        ["two", "healthy"],
      ]);
      const before = { webOne: count("web", "one"), apiOne: count("api", "one") };
      await until(
        () => count("api", "one") >= before.apiOne + 20 && count("web", "two") >= 20,
        "api/one and web/two to take more requests",
        10_000,
      );
      assert.equal(count("web", "one"), before.webOne, "the drained server still got requests");
      const events = await page.locator("#events li").allTextContents();
      assert.ok(events.some((t) => /web\/one healthy → draining/.test(t)), events.join("\n"));

      // Switch pool api's strategy from the page; pool web keeps its own.
      await page.locator("#strategy-api").selectOption("least-conn");
      await until(
        async () => (await adminJson("/api/pools/api/strategy")).name === "least-conn",
        "pool api's strategy to become least-conn",
        5000,
      );
      assert.equal((await adminJson("/api/pools/web/strategy")).name, "round-robin");
      await page.waitForTimeout(1200); // a periodic snapshot must not undo the choice
      assert.equal(await page.locator("#strategy-api").inputValue(), "least-conn");
      assert.equal(await page.locator("#strategy-web").inputValue(), "round-robin");

      // Add a server named like one of pool web's to pool api from the form.
      await page.locator("#add-pool").selectOption("api");
      await page.locator("#add-url").fill(backends[4].url);
      await page.locator("#add-name").fill("one-more");
      await page.locator("#add-form button[type=submit]").click();
      await page.locator(row("api", "one-more")).waitFor({ timeout: 5000 });
      assert.equal(await page.locator(`#pool-web ${row("api", "one-more")}`).count(), 0);
      const apiAfter = await adminJson("/api/pools/api/servers");
      assert.deepEqual(apiAfter.servers.map((s: any) => s.id), ["one", "two", "one-more"]);
      assert.equal((await adminJson("/api/pools/web/servers")).servers.length, 2);

      await Deno.mkdir("tests/artifacts", { recursive: true });
      await page.locator("#toast.show").waitFor({ state: "detached", timeout: 5000 });
      await page.evaluate("window.scrollTo(0, 0)"); // else the sticky header lands mid-shot
      await page.screenshot({ path: "tests/artifacts/dashboard_pools.png", fullPage: true });
      assert.deepEqual(problems, []);
      await context.close();
    } finally {
      await browser?.close();
      await stopLoad();
      await lb.shutdown(2000);
      await Promise.all(backends.map((b) => b.close()));
    }
  },
});
