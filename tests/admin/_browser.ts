/**
 * Test helper: headless Chromium (Debian package `chromium`, installed by tests/setup.ts)
 * driven by playwright-core, and a page that collects its script and console errors.
 */
import { type Browser, chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";

export async function assertChromium(): Promise<void> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}: install the Debian package "chromium" (.ci/run does)`,
    );
  }
}

export function launch(): Promise<Browser> {
  return chromium.launch({
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
}

/** A page that collects its script errors and console errors into `problems`. */
export async function openPage(browser: Browser, url: string) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  await page.goto(url);
  return { context, page, problems };
}
