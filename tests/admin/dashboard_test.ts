/**
 * The dashboard in a real browser: headless Chromium (Debian package `chromium`) driven by
 * playwright-core opens the page of a running lb under load, sees three servers, drains
 * one with a click, and sees the traffic move. Saves tests/artifacts/dashboard.png.
 */
import assert from "node:assert/strict";
import { type Browser, chromium } from "playwright-core";
import { type DemoBackend, startDemoBackend } from "../../backends/demo.ts";
import { startLb } from "../../src/lb.ts";
import { createLogger } from "../../src/log.ts";
import { testConfig, until } from "../_stack.ts";

const CHROMIUM = "/usr/bin/chromium";

Deno.test({
  name: "the dashboard shows three live servers, drains one with a click, and the traffic moves",
  async fn() {
    try {
      await Deno.stat(CHROMIUM);
    } catch {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: install the Debian package "chromium" (.ci/run does)`,
      );
    }
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
    let loading = true;
    const load = Promise.all([0, 1].map(async () => {
      while (loading) {
        try {
          const res = await fetch(lb.url + "/work");
          await res.body?.cancel();
        } catch {
          // lb shutting down at the end of the test
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }));

    let browser: Browser | undefined;
    try {
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-quic",
          "--no-first-run",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      const problems: string[] = [];
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(`console error: ${m.text()}`);
      });
      await page.goto(lb.adminUrl + "/");

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
      loading = false;
      await load;
      await lb.shutdown(2000);
      await Promise.all(backends.map((b) => b.close()));
    }
  },
});
