import assert from "node:assert/strict";
import plugin, { MAX_LINES } from "../../lint/function_length.ts";

/** A function of `lines` lines, in each of the three forms. */
function sources(lines: number): string[] {
  const body = Array.from({ length: lines - 2 }, (_, i) => `  const a${i} = ${i};`).join("\n");
  return [
    `function f() {\n${body}\n}\n`,
    `const g = function () {\n${body}\n};\n`,
    `const h = () => {\n${body}\n};\n`,
  ];
}

Deno.test("the function-length rule flags a function in src/ longer than 100 lines, in every form", () => {
  for (const source of sources(MAX_LINES + 1)) {
    const found = Deno.lint.runPlugin(plugin, "/repo/src/proxy/x.ts", source);
    assert.equal(found.length, 1, source.slice(0, 30));
    assert.match(found[0].message, /is 101 lines long; the longest allowed in src\/ is 100/);
  }
});

Deno.test("the function-length rule lets a 100-line function pass, and does not look outside src/", () => {
  for (const source of sources(MAX_LINES)) {
    assert.deepEqual(Deno.lint.runPlugin(plugin, "/repo/src/proxy/x.ts", source), []);
  }
  for (const source of sources(MAX_LINES + 50)) {
    assert.deepEqual(Deno.lint.runPlugin(plugin, "/repo/tests/x_test.ts", source), []);
  }
});
