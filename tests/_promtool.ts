/** Test helper: `promtool check metrics` over an exposition (Debian package "prometheus"). */
import assert from "node:assert/strict";

/** Fails unless `promtool check metrics` finds no problem in `text`. */
export async function assertPromtoolClean(text: string): Promise<void> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    throw new Error(
      `promtool is not installed (${
        (e as Error).message
      }); install the Debian package "prometheus" (.ci/run does)`,
    );
  }
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const out = await child.output();
  const report = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `promtool found problems:\n${report}`);
  assert.equal(report.trim(), "", `promtool found problems:\n${report}`);
}
