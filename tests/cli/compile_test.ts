/**
 * `deno task compile` cannot run here (it downloads Deno's runtime base binary), so this
 * checks what it would embed: the default lb.yaml and the dashboard's three files are text
 * imports, hence modules of src/main.ts's graph, which `deno compile` puts into the binary;
 * the compile task also `--include`s them, so they are there even if a Deno release stopped
 * treating text imports as modules.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../..", import.meta.url);
const EMBEDDED = [
  "lb.yaml",
  "src/admin/dashboard/index.html",
  "src/admin/dashboard/style.css",
  "src/admin/dashboard/app.js",
];

Deno.test("the files lb serves are in src/main.ts's module graph and in the compile task's --include", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "src/main.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const graph = JSON.parse(new TextDecoder().decode(out.stdout));
  const modules = new Set<string>(graph.modules.map((m: { specifier: string }) => m.specifier));
  for (const file of EMBEDDED) {
    assert.ok(modules.has(new URL(file, ROOT).href), `${file} is not imported`);
  }
  const task: string =
    JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks.compile;
  assert.match(task, /--include lb\.yaml/);
  assert.match(task, /--include src\/admin\/dashboard\//);
});
