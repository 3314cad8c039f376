/**
 * The dashboard of a cluster member in headless Chromium: the cluster card lists both
 * instances, and says so when Redis goes away. Saves tests/artifacts/dashboard_cluster.png.
 */
import assert from "node:assert/strict";
import { assertChromium, launch, openPage } from "../admin/_browser.ts";
import { startCluster, untilConnected } from "./_cluster.ts";

Deno.test("the dashboard lists the cluster's instances and shows when Redis is away", async () => {
  await assertChromium();
  const rig = await startCluster(2);
  const browser = await launch();
  try {
    await untilConnected(rig.instances);
    const { page, problems, context } = await openPage(browser, rig.instances[0].admin + "/");
    await page.waitForSelector("#cluster tbody tr[data-member='i1']", { timeout: 10_000 });
    const rows = await page.$$eval(
      "#cluster tbody tr",
      (trs) => trs.map((tr) => tr.getAttribute("data-member")),
    );
    assert.deepEqual(rows, ["i0", "i1"]);
    assert.match(await page.textContent("#cluster tbody tr[data-member='i0']") ?? "", /this one/);
    assert.match(await page.textContent("#cluster-state") ?? "", /2 instances/);
    await Deno.mkdir("tests/artifacts", { recursive: true });
    await page.screenshot({ path: "tests/artifacts/dashboard_cluster.png", fullPage: true });
    await rig.redis.stop();
    await page.waitForSelector("#cluster-state:has-text('Redis unreachable')", {
      timeout: 10_000,
    });
    assert.deepEqual(problems, []);
    await context.close();
  } finally {
    await browser.close();
    await rig.close();
  }
});
