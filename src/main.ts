/**
 * lb: an HTTP load balancer. The one entry point: `deno run -A src/main.ts <command>`,
 * or the compiled `./lb <command>`.
 */
import denoJson from "../deno.json" with { type: "json" };
import { type Command, UsageError } from "./cli/_flags.ts";
import { serveCommand } from "./cli/serve.ts";
import { backendsCommand } from "./cli/backends.ts";
import { checkCommand } from "./cli/check.ts";
import { simulateCommand } from "./cli/simulate.ts";
import { demoCommand } from "./cli/demo.ts";
import { routeCommand } from "./cli/route.ts";

const VERSION: string = denoJson.version;

const COMMANDS: Command[] = [
  serveCommand,
  backendsCommand,
  checkCommand,
  routeCommand,
  simulateCommand,
  demoCommand,
];

const HELP = `lb ${VERSION}: an HTTP load balancer you can read in an afternoon

Usage: lb <command> [flags]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(10)}${c.summary}`).join("\n")}

Flags:
  -h, --help     show help (also: lb <command> --help)
  -V, --version  print the version

Examples:
  lb backends --count 3 --latency 5,50,200
  lb serve --strategy least-conn
  lb check --config lb.yaml
  lb route GET http://api.example.com/v1/users
`;

/** Runs lb with `args`; returns the exit code. Never throws. */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`lb ${VERSION}`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  try {
    if (!cmd) {
      throw new UsageError(
        name.startsWith("-") ? `unknown flag ${name}` : `unknown command "${name}"`,
      );
    }
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(cmd.usage);
      return 0;
    }
    return await cmd.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      const hint = e.command ? `lb ${e.command} --help` : "lb --help";
      console.error(`lb: ${e.message}\nRun '${hint}' for usage.`);
      return 2;
    }
    console.error(`lb: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
