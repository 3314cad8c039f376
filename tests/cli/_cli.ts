/** Running `lb` as a subprocess, as users do, for the CLI tests. */
import assert from "node:assert/strict";

export const ROOT = new URL("../..", import.meta.url).pathname;

/** What a finished `lb …` printed and its exit code. */
export interface LbRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `lb …` as a subprocess to completion. */
export async function lb(args: string[], opts: { cwd?: string } = {}): Promise<LbRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, ...args],
    cwd: opts.cwd ?? ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Starts `lb …` as a subprocess that keeps running; `out()` is its stdout so far. */
export function spawnLb(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}src/main.ts`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let out = "";
  const reading = (async () => {
    for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) out += c;
  })();
  const errText = new Response(child.stderr).text();
  return { child, out: () => out, reading, errText };
}

/** A usage error: exit 2, one line plus the hint, no stack trace. */
export function assertUsageError(r: LbRun, pattern: RegExp) {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 2, r.stderr);
  assert.match(lines[0], pattern);
  assert.match(lines[1], /^Run 'lb( \w+)? --help' for usage\.$/);
  assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/);
}
