/**
 * lb's own lint rule, run by `deno lint` (deno.json `lint.plugins`): no function in src/
 * is longer than {@link MAX_LINES} lines, so the request path stays a set of stages a
 * newcomer can read, not one closure that grows with every feature. Tests, benchmarks and
 * the demo backends are not held to it.
 */

/** The longest function allowed in src/, in lines from its first to its last. */
export const MAX_LINES = 100;

type FunctionNode =
  | Deno.lint.FunctionDeclaration
  | Deno.lint.FunctionExpression
  | Deno.lint.ArrowFunctionExpression;

const plugin: Deno.lint.Plugin = {
  name: "lb",
  rules: {
    "function-length": {
      create(ctx) {
        if (!/[\\/]src[\\/]/.test(ctx.filename)) return {};
        const text = ctx.sourceCode.text;
        const check = (node: FunctionNode) => {
          const [start, end] = node.range;
          let lines = 1;
          for (let i = start; i < end; i++) if (text.charCodeAt(i) === 10) lines++;
          if (lines <= MAX_LINES) return;
          ctx.report({
            node,
            message: `this function is ${lines} lines long; the longest allowed in src/ is ` +
              `${MAX_LINES}: split it into functions that each do one step`,
          });
        };
        return {
          FunctionDeclaration: check,
          FunctionExpression: check,
          ArrowFunctionExpression: check,
        };
      },
    },
  },
};

export default plugin;
